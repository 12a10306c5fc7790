// File-descriptor helpers JavaScript lacks: eventfd create/read/write and
// close. (Watching an eventfd from the event loop comes with the virtio
// queues; Node cannot poll an arbitrary fd by itself.)
#include <sys/eventfd.h>
#include <unistd.h>

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

void InitFdUtil(Napi::Env env, Napi::Object exports) {
  exports.Set("eventfdCreate", Napi::Function::New(env, EventfdCreate));
  exports.Set("eventfdRead", Napi::Function::New(env, EventfdRead));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventfdWrite));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
}

}  // namespace mv
