// File-descriptor helpers JavaScript lacks: eventfd create/read/write,
// close, and FdWatcher, which watches eventfds from a thread of its own
// (Node cannot poll an arbitrary fd by itself) and tells JavaScript which
// fired, so that a guest's queue notification caught by an ioeventfd
// reaches the device model without a vCPU exit.
#include <fcntl.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common.h"

namespace mv {

static Napi::Value EventfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t init = 0;
  bool nonblock = true;
  if (info.Length() > 0 && !ArgU32(info, 0, "initval", &init)) return env.Undefined();
  if (info.Length() > 1) nonblock = info[1].ToBoolean().Value();
  int fd = eventfd(init, EFD_CLOEXEC | (nonblock ? EFD_NONBLOCK : 0));
  if (fd < 0) {
    ThrowErrno(env, "eventfd", errno);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

// eventfdRead(fd) -> counter value as a number, or 0 when nothing was
// signalled (non-blocking fd).
static Napi::Value EventfdRead(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  if (!ArgI32(info, 0, "fd", &fd)) return env.Undefined();
  uint64_t v = 0;
  ssize_t r;
  do {
    r = read(fd, &v, sizeof v);
  } while (r < 0 && errno == EINTR);
  if (r < 0) {
    if (errno == EAGAIN) return Napi::Number::New(env, 0);
    ThrowErrno(env, "read(eventfd)", errno);
    return env.Undefined();
  }
  return Napi::Number::New(env, static_cast<double>(v));
}

static Napi::Value EventfdWrite(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint64_t v = 1;
  if (!ArgI32(info, 0, "fd", &fd)) return env.Undefined();
  if (info.Length() > 1 && !ArgU64(info, 1, "value", &v)) return env.Undefined();
  ssize_t r;
  do {
    r = write(fd, &v, sizeof v);
  } while (r < 0 && errno == EINTR);
  if (r < 0) ThrowErrno(env, "write(eventfd)", errno);
  return env.Undefined();
}

static Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  int32_t fd;
  if (!ArgI32(info, 0, "fd", &fd)) return info.Env().Undefined();
  if (close(fd) < 0) ThrowErrno(info.Env(), "close", errno);
  return info.Env().Undefined();
}

// flock(fd, operation): the image locks of src/vmm/block/lock.ts (LOCK_SH /
// LOCK_EX | LOCK_NB); a conflict throws an Error with code EAGAIN.
static Napi::Value Flock(const Napi::CallbackInfo& info) {
  int32_t fd, op;
  if (!ArgI32(info, 0, "fd", &fd) || !ArgI32(info, 1, "operation", &op)) return info.Env().Undefined();
  int r;
  do r = flock(fd, op);
  while (r < 0 && errno == EINTR);
  if (r < 0) ThrowErrno(info.Env(), "flock", errno);
  return info.Env().Undefined();
}

// lseekData(fd, offset) / lseekHole(fd, offset): lseek(2) with SEEK_DATA or
// SEEK_HOLE, which Node's fs lacks (sparse snapshot files). The next data (or
// hole) at or after offset; -1 when there is none (ENXIO: offset at or past
// the end of the file, or no data after it).
static Napi::Value LseekWhence(const Napi::CallbackInfo& info, int whence, const char* name) {
  int32_t fd;
  if (!ArgI32(info, 0, "fd", &fd)) return info.Env().Undefined();
  if (info.Length() < 2 || !info[1].IsNumber()) {
    ThrowType(info.Env(), "offset must be a number");
    return info.Env().Undefined();
  }
  double want = info[1].As<Napi::Number>().DoubleValue();
  if (!(want >= 0 && want <= 9007199254740991.0) || want != static_cast<double>(static_cast<int64_t>(want))) {
    ThrowRange(info.Env(), "offset must be a safe non-negative integer");
    return info.Env().Undefined();
  }
  off_t r = lseek(fd, static_cast<off_t>(want), whence);
  if (r < 0) {
    if (errno == ENXIO) return Napi::Number::New(info.Env(), -1);
    ThrowErrno(info.Env(), name, errno);
    return info.Env().Undefined();
  }
  return Napi::Number::New(info.Env(), static_cast<double>(r));
}

static Napi::Value LseekData(const Napi::CallbackInfo& info) {
  return LseekWhence(info, SEEK_DATA, "lseek(SEEK_DATA)");
}

static Napi::Value LseekHole(const Napi::CallbackInfo& info) {
  return LseekWhence(info, SEEK_HOLE, "lseek(SEEK_HOLE)");
}

// ---- FdWatcher ---------------------------------------------------------------
//
// new FdWatcher(cb): one epoll thread per watcher. add(fd) watches a
// non-blocking eventfd; when it becomes readable the thread reads it (which
// resets the counter, so any number of writes before JavaScript runs are
// one event) and queues the fd. One threadsafe-function call (uv_async)
// carries every fd that fired since the last one to the JavaScript thread,
// which calls cb(fd) once per fd. remove(fd) and close() take effect at
// once: no callback names an fd after its remove() returned, nor any fd
// after close().
//
// Each registration is EPOLLONESHOT and re-armed after the read, and
// carries a generation number: an fd closed without remove() (its epoll
// item can outlive the number while KVM holds the eventfd) fires at most
// once and is then ignored, never read through a reused fd number and
// never a busy loop. Call remove() before closing an fd.

namespace {

constexpr uint64_t kStopToken = ~0ull;

struct WatchShared {
  std::mutex mu;
  int epfd = -1;
  int stopfd = -1;
  uint32_t nextGen = 0;
  std::unordered_map<int, uint32_t> gens;  // watched fd -> generation
  std::vector<int> pending;                // fired, not yet delivered
  std::unordered_set<int> pendingSet;
  std::atomic<bool> queued{false};
  std::atomic<bool> closed{false};
  Napi::ThreadSafeFunction tsfn;
  // Node deletes a threadsafe function it finalizes (at close, or at
  // environment teardown, possibly before our destructor runs): after
  // that neither the thread nor Shutdown may touch `tsfn`.
  bool tsfnGone = false;
  bool shutDown = false;  // Shutdown() ran
  pthread_t thread{};
  bool threadRunning = false;

  // JavaScript thread only (Shutdown and the finalizer): idempotent.
  void StopThread() {
    closed.store(true);
    if (!threadRunning) return;
    uint64_t one = 1;
    ssize_t r;
    do {
      r = write(stopfd, &one, sizeof one);
    } while (r < 0 && errno == EINTR);
    pthread_join(thread, nullptr);
    threadRunning = false;
  }

  void CloseFds() {
    if (stopfd >= 0) close(stopfd);
    if (epfd >= 0) close(epfd);
    stopfd = epfd = -1;
  }
};

void Deliver(const std::shared_ptr<WatchShared>& sh, Napi::Env env, Napi::Function fn);

void Schedule(const std::shared_ptr<WatchShared>& sh) {
  if (sh->queued.exchange(true)) return;
  napi_status st = sh->tsfn.NonBlockingCall([sh](Napi::Env env, Napi::Function fn) {
    if (env != nullptr && fn != nullptr) Deliver(sh, env, fn);
  });
  if (st != napi_ok) sh->queued.store(false);
}

void Deliver(const std::shared_ptr<WatchShared>& sh, Napi::Env env, Napi::Function fn) {
  sh->queued.store(false);
  std::vector<int> fds;
  {
    std::lock_guard<std::mutex> g(sh->mu);
    fds.swap(sh->pending);
    sh->pendingSet.clear();
  }
  for (size_t i = 0; i < fds.size(); i++) {
    {
      // remove() and close() run on this thread too, so this check holds
      // for the call below.
      std::lock_guard<std::mutex> g(sh->mu);
      if (sh->closed.load() || !sh->gens.count(fds[i])) continue;
    }
    fn.Call({Napi::Number::New(env, fds[i])});
    if (env.IsExceptionPending()) {
      // The exception goes to process 'uncaughtException'; the fds not yet
      // delivered get another call.
      std::lock_guard<std::mutex> g(sh->mu);
      for (size_t j = i + 1; j < fds.size(); j++)
        if (sh->pendingSet.insert(fds[j]).second) sh->pending.push_back(fds[j]);
      if (!sh->pending.empty() && !sh->closed.load()) Schedule(sh);
      return;
    }
  }
}

void* WatchThread(void* arg) {
  auto* holder = static_cast<std::shared_ptr<WatchShared>*>(arg);
  std::shared_ptr<WatchShared> sh = *holder;
  delete holder;
  epoll_event evs[32];
  for (;;) {
    int n = epoll_wait(sh->epfd, evs, 32, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // EBADF/EINVAL: the watcher is being torn down
    }
    bool any = false;
    for (int i = 0; i < n; i++) {
      uint64_t tok = evs[i].data.u64;
      if (tok == kStopToken) return nullptr;
      int fd = static_cast<int>(tok & 0xffffffffu);
      uint32_t gen = static_cast<uint32_t>(tok >> 32);
      std::lock_guard<std::mutex> g(sh->mu);
      auto it = sh->gens.find(fd);
      if (it == sh->gens.end() || it->second != gen) continue;  // removed or stale
      uint64_t v;
      ssize_t r;
      do {
        r = read(fd, &v, sizeof v);
      } while (r < 0 && errno == EINTR);
      if (r < 0 && errno == EAGAIN) {
        // Someone else read it first: nothing to report.
      } else if (sh->pendingSet.insert(fd).second) {
        sh->pending.push_back(fd);
        any = true;
      }
      epoll_event ev{};
      ev.events = EPOLLIN | EPOLLONESHOT;
      ev.data.u64 = tok;
      epoll_ctl(sh->epfd, EPOLL_CTL_MOD, fd, &ev);
    }
    if (sh->closed.load()) return nullptr;
    if (any) Schedule(sh);
  }
  return nullptr;
}

class FdWatcher : public Napi::ObjectWrap<FdWatcher> {
 public:
  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(env, "FdWatcher",
                                   {
                                       InstanceMethod("add", &FdWatcher::Add),
                                       InstanceMethod("remove", &FdWatcher::Remove),
                                       InstanceMethod("close", &FdWatcher::Close),
                                       InstanceMethod("ref", &FdWatcher::Ref),
                                       InstanceMethod("unref", &FdWatcher::Unref),
                                   });
    exports.Set("FdWatcher", f);
  }

  explicit FdWatcher(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FdWatcher>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsFunction()) {
      ThrowType(env, "new FdWatcher(callback)");
      return;
    }
    auto sh = std::make_shared<WatchShared>();
    sh->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (sh->epfd < 0) {
      ThrowErrno(env, "epoll_create1", errno);
      return;
    }
    sh->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (sh->stopfd < 0) {
      ThrowErrno(env, "eventfd", errno);
      close(sh->epfd);
      return;
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = kStopToken;
    if (epoll_ctl(sh->epfd, EPOLL_CTL_ADD, sh->stopfd, &ev) < 0) {
      ThrowErrno(env, "epoll_ctl", errno);
      close(sh->stopfd);
      close(sh->epfd);
      return;
    }
    auto* fin = new std::shared_ptr<WatchShared>(sh);
    sh->tsfn = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "mvisor-fd-watcher", 0, 1,
                                             [](Napi::Env, std::shared_ptr<WatchShared>* p) {
                                               (*p)->StopThread();
                                               (*p)->tsfnGone = true;
                                               delete p;
                                             },
                                             fin);
    auto* arg = new std::shared_ptr<WatchShared>(sh);
    int err = pthread_create(&sh->thread, nullptr, WatchThread, arg);
    if (err != 0) {
      delete arg;
      sh->closed.store(true);
      sh->tsfn.Release();
      sh->CloseFds();
      ThrowErrno(env, "pthread_create", err);
      return;
    }
    sh->threadRunning = true;
    sh_ = sh;
  }

  ~FdWatcher() override { Shutdown(); }

 private:
  // Stops and joins the thread, then lets go of the callback (idempotent).
  void Shutdown() {
    if (!sh_ || sh_->shutDown) return;
    sh_->shutDown = true;
    sh_->StopThread();
    {
      std::lock_guard<std::mutex> g(sh_->mu);
      sh_->gens.clear();
      sh_->pending.clear();
      sh_->pendingSet.clear();
    }
    sh_->CloseFds();
    if (!sh_->tsfnGone) sh_->tsfn.Release();
  }

  bool Usable(Napi::Env env) {
    if (sh_ && !sh_->closed.load()) return true;
    Napi::Error::New(env, "FdWatcher is closed").ThrowAsJavaScriptException();
    return false;
  }

  // add(fd): watch a non-blocking eventfd.
  Napi::Value Add(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int32_t fd;
    if (!ArgI32(info, 0, "fd", &fd) || !Usable(env)) return env.Undefined();
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) {
      ThrowErrno(env, "fcntl", errno);
      return env.Undefined();
    }
    if (!(fl & O_NONBLOCK)) {
      // The thread reads the fd; a blocking read would hang it.
      ThrowRange(env, "fd " + std::to_string(fd) + " must be non-blocking");
      return env.Undefined();
    }
    std::lock_guard<std::mutex> g(sh_->mu);
    if (sh_->gens.count(fd)) {
      ThrowRange(env, "fd " + std::to_string(fd) + " is already watched");
      return env.Undefined();
    }
    uint32_t gen = ++sh_->nextGen;
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLONESHOT;
    ev.data.u64 = (static_cast<uint64_t>(gen) << 32) | static_cast<uint32_t>(fd);
    if (epoll_ctl(sh_->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
      ThrowErrno(env, "epoll_ctl(EPOLL_CTL_ADD)", errno);
      return env.Undefined();
    }
    sh_->gens[fd] = gen;
    return env.Undefined();
  }

  // remove(fd): stop watching; returns whether fd was watched.
  Napi::Value Remove(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    int32_t fd;
    if (!ArgI32(info, 0, "fd", &fd)) return env.Undefined();
    if (!sh_ || sh_->closed.load()) return Napi::Boolean::New(env, false);
    std::lock_guard<std::mutex> g(sh_->mu);
    auto it = sh_->gens.find(fd);
    if (it == sh_->gens.end()) return Napi::Boolean::New(env, false);
    sh_->gens.erase(it);
    // EBADF/ENOENT: the fd was closed first; the generation check covers it.
    epoll_ctl(sh_->epfd, EPOLL_CTL_DEL, fd, nullptr);
    if (sh_->pendingSet.erase(fd)) {
      for (auto p = sh_->pending.begin(); p != sh_->pending.end(); ++p)
        if (*p == fd) {
          sh_->pending.erase(p);
          break;
        }
    }
    return Napi::Boolean::New(env, true);
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  // The watcher keeps the event loop alive until closed, unless unref'd.
  Napi::Value Ref(const Napi::CallbackInfo& info) {
    if (Usable(info.Env())) sh_->tsfn.Ref(info.Env());
    return info.Env().Undefined();
  }

  Napi::Value Unref(const Napi::CallbackInfo& info) {
    if (Usable(info.Env())) sh_->tsfn.Unref(info.Env());
    return info.Env().Undefined();
  }

  std::shared_ptr<WatchShared> sh_;
};

}  // namespace

void InitFdUtil(Napi::Env env, Napi::Object exports) {
  FdWatcher::Init(env, exports);
  exports.Set("eventfdCreate", Napi::Function::New(env, EventfdCreate));
  exports.Set("eventfdRead", Napi::Function::New(env, EventfdRead));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventfdWrite));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("flock", Napi::Function::New(env, Flock));
  exports.Set("lseekData", Napi::Function::New(env, LseekData));
  exports.Set("lseekHole", Napi::Function::New(env, LseekHole));
}

}  // namespace mv
