// Vm, continued: the hand-off of vCPU exits to JavaScript.
//
// The exit hand-off (the VMM's hottest path) works like this: each vCPU
// has a native thread that runs KVM_RUN. On an exit it publishes the exit
// in its mailbox (the kvm_run page itself is visible to JavaScript, so
// nothing is copied) and spins for up to spin_ns_vcpu_ waiting for the
// answer, then sleeps on a futex. JavaScript answers and asks for the next
// exit in one call, Pump(), which spins up to spin_ns_js_ for another exit
// before returning to the event loop. While JavaScript is away from Pump()
// a vCPU that posts an exit wakes the event loop through a threadsafe
// function (uv_async). So a guest that streams exits is served at spin
// speed, and a guest that computes costs no spinning core. See
// bench/exit.ts for what this costs against the raw C loop.

#include <linux/futex.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "kvm.h"

namespace mv {

int KickSignal() { return SIGRTMIN + 4; }

static uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + ts.tv_nsec;
}

static inline void CpuRelax() { __builtin_ia32_pause(); }

static long Futex(std::atomic<int32_t>* addr, int op, int32_t val) {
  return syscall(SYS_futex, reinterpret_cast<int32_t*>(addr), op, val, nullptr, nullptr, 0);
}

void Vm::Post(VcpuCore* c, int32_t kind, int32_t err) {
  Mailbox* m = &mailboxes_[c->index];
  m->kind = kind;
  m->err = err;
  m->state.store(kPending, std::memory_order_seq_cst);
  if (js_idle_.load(std::memory_order_seq_cst) && !wake_queued_.exchange(1)) {
    if (wake_set_) wake_.NonBlockingCall([this](Napi::Env, Napi::Function fn) {
      wake_queued_.store(0);
      fn.Call({});
    });
  }
  uint64_t deadline = NowNs() + spin_ns_vcpu_;
  for (uint32_t i = 0; m->state.load(std::memory_order_acquire) == kPending; i++) {
    CpuRelax();
    if ((i & 63) == 0 && NowNs() > deadline) {
      m->sleeping.store(1, std::memory_order_seq_cst);
      while (m->state.load(std::memory_order_seq_cst) == kPending) Futex(&m->state, FUTEX_WAIT_PRIVATE, kPending);
      m->sleeping.store(0, std::memory_order_relaxed);
      break;
    }
  }
  m->state.store(kRunning, std::memory_order_relaxed);
}

struct ThreadArg {
  Vm* vm;
  std::shared_ptr<VcpuCore> core;
};

static void* VcpuThread(void* p) {
  std::unique_ptr<ThreadArg> arg(static_cast<ThreadArg*>(p));
  Vm* vm = arg->vm;
  VcpuCore* c = arg->core.get();
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, KickSignal());
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  while (!c->stop_req.load()) {
    if (c->pause_req.load()) {
      // Let KVM finish the I/O or MMIO instruction JavaScript just answered
      // (it does so on the next KVM_RUN, which immediate_exit makes return
      // at once), so the state read while paused is between instructions.
      c->run->immediate_exit = 1;
      ioctl(c->fd, KVM_RUN, 0);
      c->run->immediate_exit = 0;
      vm->Post(c, kPaused, 0);
      continue;
    }
    int r = ioctl(c->fd, KVM_RUN, 0);
    if (r < 0) {
      int e = errno;
      c->run->immediate_exit = 0;
      if (e == EINTR || e == EAGAIN) continue;
      vm->Post(c, kRunError, e);
      continue;
    }
    if (c->run->exit_reason == KVM_EXIT_INTR) continue;
    vm->Post(c, kKvmExit, 0);
  }
  return nullptr;
}

Napi::Value Vm::StartVcpu(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t idx;
  if (!ArgU32(info, 0, "index", &idx)) return env.Undefined();
  if (idx >= vcpus_.size() || vcpus_[idx]->thread_started) {
    ThrowRange(env, "no such vCPU, or already started");
    return env.Undefined();
  }
  auto* arg = new ThreadArg{this, vcpus_[idx]};
  int e = pthread_create(&vcpus_[idx]->thread, nullptr, VcpuThread, arg);
  if (e != 0) {
    delete arg;
    ThrowErrno(env, "pthread_create", e);
    return env.Undefined();
  }
  vcpus_[idx]->thread_started = true;
  return env.Undefined();
}

int32_t Vm::ScanPending() {
  uint32_t n = static_cast<uint32_t>(vcpus_.size());
  for (uint32_t k = 0; k < n; k++) {
    uint32_t i = (scan_start_ + k) % n;
    Mailbox& m = mailboxes_[i];
    if (m.state.load(std::memory_order_acquire) == kPending && m.kind != kParked) {
      scan_start_ = i + 1;
      // A pause is reported once; then the vCPU stays parked without
      // being handed out again (no busy loop while the VM is paused).
      if (m.kind == kPaused) m.kind = kParked;
      return static_cast<int32_t>(i);
    }
  }
  return -1;
}

void Vm::CompleteIndex(uint32_t i) {
  Mailbox* m = &mailboxes_[i];
  if (m->state.load(std::memory_order_acquire) != kPending) return;
  m->state.store(kDone, std::memory_order_seq_cst);
  if (m->sleeping.load(std::memory_order_seq_cst)) Futex(&m->state, FUTEX_WAKE_PRIVATE, 1);
}

// pump(completeIndex): answers the exit of vCPU completeIndex (-1: none),
// then returns the index of a vCPU with a pending exit, waiting up to the
// JavaScript spin time; -1 when none came (the event loop then gets a wake
// call for the next one).
Napi::Value Vm::Pump(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t done;
  if (!ArgI32(info, 0, "completeIndex", &done)) return env.Undefined();
  if (done >= 0 && static_cast<size_t>(done) < vcpus_.size()) CompleteIndex(done);
  js_idle_.store(0, std::memory_order_seq_cst);
  int32_t idx = ScanPending();
  if (idx >= 0) return Napi::Number::New(env, idx);
  if (spin_ns_js_ > 0) {
    uint64_t deadline = NowNs() + spin_ns_js_;
    for (uint32_t i = 0;; i++) {
      idx = ScanPending();
      if (idx >= 0) return Napi::Number::New(env, idx);
      CpuRelax();
      if ((i & 31) == 0 && NowNs() > deadline) break;
    }
  }
  js_idle_.store(1, std::memory_order_seq_cst);
  idx = ScanPending();
  if (idx >= 0) {
    js_idle_.store(0, std::memory_order_seq_cst);
    return Napi::Number::New(env, idx);
  }
  return Napi::Number::New(env, -1);
}

Napi::Value Vm::Complete(const Napi::CallbackInfo& info) {
  uint32_t i;
  if (!ArgU32(info, 0, "index", &i)) return info.Env().Undefined();
  if (i < vcpus_.size()) CompleteIndex(i);
  return info.Env().Undefined();
}

// kick(index, pause): makes the vCPU leave KVM_RUN. With pause=true it
// parks in its mailbox with kind "paused" until complete(index).
Napi::Value Vm::Kick(const Napi::CallbackInfo& info) {
  uint32_t i;
  if (!ArgU32(info, 0, "index", &i)) return info.Env().Undefined();
  bool pause = info.Length() > 1 && info[1].ToBoolean().Value();
  if (i >= vcpus_.size()) return info.Env().Undefined();
  VcpuCore* c = vcpus_[i].get();
  c->pause_req.store(pause);
  c->run->immediate_exit = 1;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (c->thread_started) pthread_kill(c->thread, KickSignal());
  return info.Env().Undefined();
}

void Vm::StopThreads() {
  for (auto& c : vcpus_) {
    c->stop_req.store(true);
    c->run->immediate_exit = 1;
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  for (auto& c : vcpus_) {
    if (!c->thread_started) continue;
    uint64_t deadline = NowNs() + 10000000000ull;
    for (;;) {
      pthread_kill(c->thread, KickSignal());
      CompleteIndex(c->index);
      if (pthread_tryjoin_np(c->thread, nullptr) == 0) break;
      if (NowNs() > deadline) {
        // A thread stuck in the kernel: leave it rather than hang the VMM.
        pthread_detach(c->thread);
        break;
      }
      usleep(200);
    }
    c->thread_started = false;
  }
}

Napi::Value Vm::Stop(const Napi::CallbackInfo& info) {
  StopThreads();
  return info.Env().Undefined();
}

}  // namespace mv
