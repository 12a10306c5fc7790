// Shared helpers of the native addon: argument checks and errno errors.
// Every exported function validates its arguments and turns a failed
// syscall into a JavaScript Error naming the ioctl and the errno text; the
// addon never aborts on bad input.
#pragma once
#include <linux/kvm.h>
#include <napi.h>
#include <sys/ioctl.h>

// See kvm_ioctls.c: these ioctl numbers must come from the C compiler.
extern "C" {
extern const unsigned long mv_KVM_GET_CPUID2, mv_KVM_SET_CPUID2, mv_KVM_GET_SUPPORTED_CPUID, mv_KVM_GET_MSRS,
    mv_KVM_SET_MSRS, mv_KVM_GET_MSR_INDEX_LIST, mv_KVM_GET_XSAVE, mv_KVM_SET_XSAVE, mv_KVM_SET_GSI_ROUTING,
    mv_sizeof_kvm_xsave, mv_off_cpuid2_entries, mv_off_msrs_entries, mv_off_msr_list_indices,
    mv_off_irq_routing_entries;
}

namespace mv {
// Typed pointers to the trailing arrays of the kernel's variable-length
// structs at the offsets C uses (g++ lays out `entries[0]` differently).
template <typename T>
inline T* Trailing(void* base, unsigned long offset) {
  return reinterpret_cast<T*>(static_cast<uint8_t*>(base) + offset);
}
}  // namespace mv
#undef KVM_GET_CPUID2
#define KVM_GET_CPUID2 mv_KVM_GET_CPUID2
#undef KVM_SET_CPUID2
#define KVM_SET_CPUID2 mv_KVM_SET_CPUID2
#undef KVM_GET_SUPPORTED_CPUID
#define KVM_GET_SUPPORTED_CPUID mv_KVM_GET_SUPPORTED_CPUID
#undef KVM_GET_MSRS
#define KVM_GET_MSRS mv_KVM_GET_MSRS
#undef KVM_SET_MSRS
#define KVM_SET_MSRS mv_KVM_SET_MSRS
#undef KVM_GET_MSR_INDEX_LIST
#define KVM_GET_MSR_INDEX_LIST mv_KVM_GET_MSR_INDEX_LIST
#undef KVM_GET_XSAVE
#define KVM_GET_XSAVE mv_KVM_GET_XSAVE
#undef KVM_SET_XSAVE
#define KVM_SET_XSAVE mv_KVM_SET_XSAVE
#undef KVM_SET_GSI_ROUTING
#define KVM_SET_GSI_ROUTING mv_KVM_SET_GSI_ROUTING

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>

namespace mv {

// Throws `what: strerror (errno N)` with .syscall, .errno and .code set.
void ThrowErrno(Napi::Env env, const char* what, int err);
void ThrowType(Napi::Env env, const std::string& msg);
void ThrowRange(Napi::Env env, const std::string& msg);

// Argument readers: return false after throwing a TypeError/RangeError.
bool ArgU32(const Napi::CallbackInfo& info, size_t i, const char* name, uint32_t* out);
bool ArgI32(const Napi::CallbackInfo& info, size_t i, const char* name, int32_t* out);
// Accepts a non-negative safe-integer Number or a BigInt.
bool ArgU64(const Napi::CallbackInfo& info, size_t i, const char* name, uint64_t* out);
// A Buffer/TypedArray/ArrayBuffer argument: pointer and byte length.
bool ArgBytes(const Napi::CallbackInfo& info, size_t i, const char* name, uint8_t** data, size_t* len);

// Retries an ioctl interrupted by a signal (not used for KVM_RUN, where
// EINTR is meaningful).
int Ioctl(int fd, unsigned long req, void* arg);
int IoctlVal(int fd, unsigned long req, unsigned long arg);

void InitKvmSystem(Napi::Env env, Napi::Object exports);
void InitKvmVm(Napi::Env env, Napi::Object exports);
void InitKvmVcpu(Napi::Env env, Napi::Object exports);
void InitFdUtil(Napi::Env env, Napi::Object exports);

}  // namespace mv
