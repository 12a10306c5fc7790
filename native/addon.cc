// Entry point of the mvisor KVM addon (see native/README.md for its shape).
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include "common.h"

namespace mv {

void ThrowErrno(Napi::Env env, const char* what, int err) {
  std::string msg = std::string(what) + ": " + strerror(err) + " (errno " + std::to_string(err) + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("syscall", Napi::String::New(env, what));
  e.Set("errno", Napi::Number::New(env, err));
  const char* code = strerrorname_np(err);
  e.Set("code", Napi::String::New(env, code ? code : "EUNKNOWN"));
  e.ThrowAsJavaScriptException();
}

void ThrowType(Napi::Env env, const std::string& msg) {
  Napi::TypeError::New(env, msg).ThrowAsJavaScriptException();
}

void ThrowRange(Napi::Env env, const std::string& msg) {
  Napi::RangeError::New(env, msg).ThrowAsJavaScriptException();
}

bool ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name, uint32_t* out) {
  if (i >= info.Length() || !info[i].IsNumber()) {
    ThrowType(info.Env(), std::string(name) + " must be a number");
    return false;
  }
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 4294967295.0) || d != static_cast<double>(static_cast<uint64_t>(d))) {
    ThrowRange(info.Env(), std::string(name) + " must be an unsigned 32-bit integer");
    return false;
  }
  *out = static_cast<uint32_t>(d);
  return true;
}

bool ArgI32(const Napi::CallbackInfo& info, size_t i, const char* name, int32_t* out) {
  if (i >= info.Length() || !info[i].IsNumber()) {
    ThrowType(info.Env(), std::string(name) + " must be a number");
    return false;
  }
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= -2147483648.0 && d <= 2147483647.0) || d != static_cast<double>(static_cast<int64_t>(d))) {
    ThrowRange(info.Env(), std::string(name) + " must be a signed 32-bit integer");
    return false;
  }
  *out = static_cast<int32_t>(d);
  return true;
}

bool ArgU64(const Napi::CallbackInfo& info, size_t i, const char* name, uint64_t* out) {
  if (i < info.Length() && info[i].IsBigInt()) {
    bool lossless = false;
    uint64_t v = info[i].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) {
      ThrowRange(info.Env(), std::string(name) + " must fit in 64 bits unsigned");
      return false;
    }
    *out = v;
    return true;
  }
  if (i >= info.Length() || !info[i].IsNumber()) {
    ThrowType(info.Env(), std::string(name) + " must be a number or bigint");
    return false;
  }
  double d = info[i].As<Napi::Number>().DoubleValue();
  if (!(d >= 0 && d <= 9007199254740991.0) || d != static_cast<double>(static_cast<uint64_t>(d))) {
    ThrowRange(info.Env(), std::string(name) + " must be a non-negative safe integer");
    return false;
  }
  *out = static_cast<uint64_t>(d);
  return true;
}

bool ArgBytes(const Napi::CallbackInfo& info, size_t i, const char* name, uint8_t** data, size_t* len) {
  if (i < info.Length()) {
    Napi::Value v = info[i];
    if (v.IsTypedArray()) {
      Napi::TypedArray ta = v.As<Napi::TypedArray>();
      *data = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
      *len = ta.ByteLength();
      return true;
    }
    if (v.IsArrayBuffer()) {
      Napi::ArrayBuffer ab = v.As<Napi::ArrayBuffer>();
      *data = static_cast<uint8_t*>(ab.Data());
      *len = ab.ByteLength();
      return true;
    }
    if (v.IsDataView()) {
      Napi::DataView dv = v.As<Napi::DataView>();
      *data = static_cast<uint8_t*>(dv.ArrayBuffer().Data()) + dv.ByteOffset();
      *len = dv.ByteLength();
      return true;
    }
  }
  ThrowType(info.Env(), std::string(name) + " must be a Buffer, TypedArray or ArrayBuffer");
  return false;
}

int Ioctl(int fd, unsigned long req, void* arg) {
  int r;
  do {
    r = ioctl(fd, req, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}

int IoctlVal(int fd, unsigned long req, unsigned long arg) {
  int r;
  do {
    r = ioctl(fd, req, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}

}  // namespace mv

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  mv::InitKvmSystem(env, exports);
  mv::InitKvmVm(env, exports);
  mv::InitKvmVcpu(env, exports);
  mv::InitFdUtil(env, exports);
  return exports;
}

NODE_API_MODULE(mvisor_kvm, Init)
