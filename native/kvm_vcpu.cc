// Vcpu: one KVM vCPU. CPUID, MSRs and every piece of architectural state
// (regs, sregs, FPU, LAPIC, XSAVE, XCRs, events, MP state, debug registers)
// can be read and set as raw kernel structs; src/vmm/kvm/ parses them. The
// kvm_run page is exposed as an ArrayBuffer for the exit handlers.
#include <sys/ioctl.h>

#include "kvm.h"

namespace mv {

Napi::FunctionReference* Vcpu::ctor = nullptr;

Vcpu::Vcpu(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Vcpu>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(Vm::ctor->Value())) {
    ThrowType(env, "new Vcpu(vm, id): vm must be a Vm");
    return;
  }
  uint32_t id;
  if (!ArgU32(info, 1, "id", &id)) return;
  Vm* vm = Vm::Unwrap(info[0].As<Napi::Object>());
  core_ = vm->AddVcpu(env, id);
  if (!core_) return;
  vm_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
}

Napi::Value Vcpu::Index(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), core_ ? core_->index : -1);
}

Napi::Value Vcpu::RunArea(const Napi::CallbackInfo& info) {
  auto* hint = new std::shared_ptr<VcpuCore>(core_);
  return Napi::ArrayBuffer::New(
      info.Env(), core_->run, core_->run_size,
      [](Napi::Env, void*, std::shared_ptr<VcpuCore>* h) { delete h; }, hint);
}

Napi::Value Vcpu::SetCpuid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
      info[0].As<Napi::Uint32Array>().ElementLength() % 7) {
    ThrowType(env, "setCpuid(entries): a Uint32Array of 7 words per entry");
    return env.Undefined();
  }
  Napi::Uint32Array a = info[0].As<Napi::Uint32Array>();
  size_t n = a.ElementLength() / 7;
  std::vector<uint8_t> buf(mv_off_cpuid2_entries + n * sizeof(kvm_cpuid_entry2));
  auto* c = reinterpret_cast<kvm_cpuid2*>(buf.data());
  auto* entries = Trailing<kvm_cpuid_entry2>(buf.data(), mv_off_cpuid2_entries);
  c->nent = n;
  for (size_t i = 0; i < n; i++) {
    const uint32_t* w = a.Data() + i * 7;
    kvm_cpuid_entry2& e = entries[i];
    e.function = w[0];
    e.index = w[1];
    e.flags = w[2];
    e.eax = w[3];
    e.ebx = w[4];
    e.ecx = w[5];
    e.edx = w[6];
  }
  if (Ioctl(core_->fd, KVM_SET_CPUID2, c) < 0) ThrowErrno(env, "KVM_SET_CPUID2", errno);
  return env.Undefined();
}

Napi::Value Vcpu::GetCpuid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t n = 256;
  std::vector<uint8_t> buf(mv_off_cpuid2_entries + n * sizeof(kvm_cpuid_entry2));
  auto* c = reinterpret_cast<kvm_cpuid2*>(buf.data());
  auto* entries = Trailing<kvm_cpuid_entry2>(buf.data(), mv_off_cpuid2_entries);
  c->nent = n;
  if (Ioctl(core_->fd, KVM_GET_CPUID2, c) < 0) {
    ThrowErrno(env, "KVM_GET_CPUID2", errno);
    return env.Undefined();
  }
  Napi::Uint32Array out = Napi::Uint32Array::New(env, c->nent * 7);
  for (uint32_t i = 0; i < c->nent; i++) {
    const kvm_cpuid_entry2& e = entries[i];
    uint32_t* o = out.Data() + i * 7;
    o[0] = e.function;
    o[1] = e.index;
    o[2] = e.flags;
    o[3] = e.eax;
    o[4] = e.ebx;
    o[5] = e.ecx;
    o[6] = e.edx;
  }
  return out;
}

struct StateKind {
  const char* name;
  size_t size;
  unsigned long get;
  unsigned long set;
  const char* get_name;
  const char* set_name;
};
static const StateKind kStates[] = {
    {"regs", sizeof(kvm_regs), KVM_GET_REGS, KVM_SET_REGS, "KVM_GET_REGS", "KVM_SET_REGS"},
    {"sregs", sizeof(kvm_sregs), KVM_GET_SREGS, KVM_SET_SREGS, "KVM_GET_SREGS", "KVM_SET_SREGS"},
    {"fpu", sizeof(kvm_fpu), KVM_GET_FPU, KVM_SET_FPU, "KVM_GET_FPU", "KVM_SET_FPU"},
    {"lapic", sizeof(kvm_lapic_state), KVM_GET_LAPIC, KVM_SET_LAPIC, "KVM_GET_LAPIC", "KVM_SET_LAPIC"},
    {"xsave", 4096, KVM_GET_XSAVE, KVM_SET_XSAVE, "KVM_GET_XSAVE", "KVM_SET_XSAVE"},
    {"xcrs", sizeof(kvm_xcrs), KVM_GET_XCRS, KVM_SET_XCRS, "KVM_GET_XCRS", "KVM_SET_XCRS"},
    {"events", sizeof(kvm_vcpu_events), KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS, "KVM_GET_VCPU_EVENTS",
     "KVM_SET_VCPU_EVENTS"},
    {"mpstate", sizeof(kvm_mp_state), KVM_GET_MP_STATE, KVM_SET_MP_STATE, "KVM_GET_MP_STATE", "KVM_SET_MP_STATE"},
    {"debugregs", sizeof(kvm_debugregs), KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS, "KVM_GET_DEBUGREGS",
     "KVM_SET_DEBUGREGS"},
};

static const StateKind* FindState(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowType(info.Env(), "state kind must be a string");
    return nullptr;
  }
  std::string k = info[0].As<Napi::String>().Utf8Value();
  for (const StateKind& s : kStates)
    if (k == s.name) return &s;
  ThrowRange(info.Env(), "unknown vCPU state kind " + k);
  return nullptr;
}

// getState(kind): a Buffer holding the kernel struct.
Napi::Value Vcpu::GetState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const StateKind* s = FindState(info);
  if (!s) return env.Undefined();
  Napi::Buffer<uint8_t> b = Napi::Buffer<uint8_t>::New(env, s->size);
  memset(b.Data(), 0, s->size);
  if (Ioctl(core_->fd, s->get, b.Data()) < 0) {
    ThrowErrno(env, s->get_name, errno);
    return env.Undefined();
  }
  return b;
}

Napi::Value Vcpu::SetState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const StateKind* s = FindState(info);
  if (!s) return env.Undefined();
  uint8_t* data;
  size_t len;
  if (!ArgBytes(info, 1, "state", &data, &len)) return env.Undefined();
  if (len != s->size) {
    ThrowRange(env, std::string(s->name) + " state must be " + std::to_string(s->size) + " bytes");
    return env.Undefined();
  }
  std::vector<uint8_t> copy(data, data + len);
  if (Ioctl(core_->fd, s->set, copy.data()) < 0) ThrowErrno(env, s->set_name, errno);
  return env.Undefined();
}

// getMsrs(Uint32Array indices) -> BigUint64Array of the values read; the
// array is shorter when KVM stopped at an MSR it does not know.
Napi::Value Vcpu::GetMsrs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    ThrowType(env, "getMsrs(indices): a Uint32Array");
    return env.Undefined();
  }
  Napi::Uint32Array idx = info[0].As<Napi::Uint32Array>();
  size_t n = idx.ElementLength();
  std::vector<uint8_t> buf(mv_off_msrs_entries + n * sizeof(kvm_msr_entry));
  auto* m = reinterpret_cast<kvm_msrs*>(buf.data());
  auto* entries = Trailing<kvm_msr_entry>(buf.data(), mv_off_msrs_entries);
  m->nmsrs = n;
  for (size_t i = 0; i < n; i++) entries[i].index = idx.Data()[i];
  int r = Ioctl(core_->fd, KVM_GET_MSRS, m);
  if (r < 0) {
    ThrowErrno(env, "KVM_GET_MSRS", errno);
    return env.Undefined();
  }
  Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(env, r * 8);
  auto* out = static_cast<uint64_t*>(ab.Data());
  for (int i = 0; i < r; i++) out[i] = entries[i].data;
  napi_value arr;
  napi_create_typedarray(env, napi_biguint64_array, r, ab, 0, &arr);
  return Napi::Value(env, arr);
}

// setMsrs(Uint32Array indices, BigUint64Array values) -> how many were set.
Napi::Value Vcpu::SetMsrs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_biguint64_array ||
      info[0].As<Napi::TypedArray>().ElementLength() != info[1].As<Napi::TypedArray>().ElementLength()) {
    ThrowType(env, "setMsrs(indices: Uint32Array, values: BigUint64Array) of equal length");
    return env.Undefined();
  }
  Napi::Uint32Array idx = info[0].As<Napi::Uint32Array>();
  Napi::TypedArray vals = info[1].As<Napi::TypedArray>();
  const uint64_t* v =
      reinterpret_cast<const uint64_t*>(static_cast<uint8_t*>(vals.ArrayBuffer().Data()) + vals.ByteOffset());
  size_t n = idx.ElementLength();
  std::vector<uint8_t> buf(mv_off_msrs_entries + n * sizeof(kvm_msr_entry));
  auto* m = reinterpret_cast<kvm_msrs*>(buf.data());
  auto* entries = Trailing<kvm_msr_entry>(buf.data(), mv_off_msrs_entries);
  m->nmsrs = n;
  for (size_t i = 0; i < n; i++) {
    entries[i].index = idx.Data()[i];
    entries[i].data = v[i];
  }
  int r = Ioctl(core_->fd, KVM_SET_MSRS, m);
  if (r < 0) {
    ThrowErrno(env, "KVM_SET_MSRS", errno);
    return env.Undefined();
  }
  return Napi::Number::New(env, r);
}

// tscKhz() -> number; tscKhz(khz) sets it.
Napi::Value Vcpu::TscKhz(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() > 0) {
    uint32_t khz;
    if (!ArgU32(info, 0, "khz", &khz)) return env.Undefined();
    if (IoctlVal(core_->fd, KVM_SET_TSC_KHZ, khz) < 0) ThrowErrno(env, "KVM_SET_TSC_KHZ", errno);
    return env.Undefined();
  }
  int r = IoctlVal(core_->fd, KVM_GET_TSC_KHZ, 0);
  if (r < 0) {
    ThrowErrno(env, "KVM_GET_TSC_KHZ", errno);
    return env.Undefined();
  }
  return Napi::Number::New(env, r);
}

// translate(gva) -> physical address (number) or -1 when not mapped.
Napi::Value Vcpu::Translate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t gva;
  if (!ArgU64(info, 0, "gva", &gva)) return env.Undefined();
  kvm_translation t{};
  t.linear_address = gva;
  if (Ioctl(core_->fd, KVM_TRANSLATE, &t) < 0) {
    ThrowErrno(env, "KVM_TRANSLATE", errno);
    return env.Undefined();
  }
  if (!t.valid) return Napi::Number::New(env, -1);
  return Napi::Number::New(env, static_cast<double>(t.physical_address));
}

void Vcpu::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "Vcpu",
                                 {
                                     InstanceMethod("index", &Vcpu::Index),
                                     InstanceMethod("runArea", &Vcpu::RunArea),
                                     InstanceMethod("setCpuid", &Vcpu::SetCpuid),
                                     InstanceMethod("getCpuid", &Vcpu::GetCpuid),
                                     InstanceMethod("getState", &Vcpu::GetState),
                                     InstanceMethod("setState", &Vcpu::SetState),
                                     InstanceMethod("getMsrs", &Vcpu::GetMsrs),
                                     InstanceMethod("setMsrs", &Vcpu::SetMsrs),
                                     InstanceMethod("tscKhz", &Vcpu::TscKhz),
                                     InstanceMethod("translate", &Vcpu::Translate),
                                 });
  ctor = new Napi::FunctionReference(Napi::Persistent(f));
  exports.Set("Vcpu", f);
}

void InitKvmVcpu(Napi::Env env, Napi::Object exports) { Vcpu::Init(env, exports); }

}  // namespace mv
