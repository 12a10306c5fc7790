// Kvm: /dev/kvm itself. Opens it, checks the API version and the
// capabilities mvisor cannot run without, and answers capability and CPUID
// queries. Also exports the kernel's constants and kvm_run offsets so that
// TypeScript never hard-codes an ABI number.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstddef>

#include "kvm.h"

namespace mv {

Napi::FunctionReference* Kvm::ctor = nullptr;

struct RequiredCap {
  int cap;
  const char* name;
};
static const RequiredCap kRequired[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},   {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},                 {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},               {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},       {KVM_CAP_MP_STATE, "KVM_CAP_MP_STATE"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"}, {KVM_CAP_IRQ_ROUTING, "KVM_CAP_IRQ_ROUTING"},
    {KVM_CAP_SIGNAL_MSI, "KVM_CAP_SIGNAL_MSI"},
};

Kvm::Kvm(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Kvm>(info) {
  Napi::Env env = info.Env();
  std::string path = "/dev/kvm";
  if (info.Length() > 0 && info[0].IsString()) path = info[0].As<Napi::String>().Utf8Value();
  fd_ = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd_ < 0) {
    int err = errno;
    std::string what = "open " + path;
    if (err == ENOENT) what += " (KVM is not available: load kvm_intel/kvm_amd or enable virtualization)";
    if (err == EACCES) what += " (no permission: run as root or join the kvm group)";
    ThrowErrno(env, what.c_str(), err);
    return;
  }
  int ver = IoctlVal(fd_, KVM_GET_API_VERSION, 0);
  if (ver != KVM_API_VERSION) {
    ThrowRange(env, path + ": KVM API version " + std::to_string(ver) + ", mvisor needs " +
                        std::to_string(KVM_API_VERSION));
    return;
  }
  for (const auto& rc : kRequired) {
    if (IoctlVal(fd_, KVM_CHECK_EXTENSION, rc.cap) <= 0) {
      ThrowRange(env, path + ": the kernel's KVM lacks " + rc.name + " (too old for mvisor)");
      return;
    }
  }
  mmap_size_ = IoctlVal(fd_, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (mmap_size_ < static_cast<int>(sizeof(kvm_run))) {
    ThrowErrno(env, "KVM_GET_VCPU_MMAP_SIZE", errno ? errno : EINVAL);
    return;
  }
}

Kvm::~Kvm() {
  if (fd_ >= 0) close(fd_);
}

Napi::Value Kvm::ApiVersion(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), IoctlVal(fd_, KVM_GET_API_VERSION, 0));
}

Napi::Value Kvm::CheckExtension(const Napi::CallbackInfo& info) {
  uint32_t cap;
  if (!ArgU32(info, 0, "cap", &cap)) return info.Env().Undefined();
  int r = IoctlVal(fd_, KVM_CHECK_EXTENSION, cap);
  return Napi::Number::New(info.Env(), r < 0 ? 0 : r);
}

// Returns a Uint32Array of 7 words per entry:
// function, index, flags, eax, ebx, ecx, edx.
Napi::Value Kvm::SupportedCpuid(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  // Some KVM implementations answer EINVAL rather than E2BIG for a short
  // buffer: grow on both.
  for (uint32_t n = 128; n <= 4096; n *= 2) {
    size_t bytes = mv_off_cpuid2_entries + n * sizeof(kvm_cpuid_entry2);
    std::vector<uint8_t> buf(bytes);
    auto* c = reinterpret_cast<kvm_cpuid2*>(buf.data());
    auto* entries = Trailing<kvm_cpuid_entry2>(buf.data(), mv_off_cpuid2_entries);
    c->nent = n;
    if (Ioctl(fd_, KVM_GET_SUPPORTED_CPUID, c) < 0) {
      if (errno == E2BIG || (errno == EINVAL && n < 4096)) continue;
      ThrowErrno(env, "KVM_GET_SUPPORTED_CPUID", errno);
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
  ThrowErrno(env, "KVM_GET_SUPPORTED_CPUID", E2BIG);
  return env.Undefined();
}

Napi::Value Kvm::MsrIndexList(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  for (uint32_t n = 256; n <= 16384; n *= 2) {
    std::vector<uint8_t> buf(mv_off_msr_list_indices + n * sizeof(uint32_t));
    auto* l = reinterpret_cast<kvm_msr_list*>(buf.data());
    l->nmsrs = n;
    if (Ioctl(fd_, KVM_GET_MSR_INDEX_LIST, l) < 0) {
      if (errno == E2BIG) continue;
      ThrowErrno(env, "KVM_GET_MSR_INDEX_LIST", errno);
      return env.Undefined();
    }
    Napi::Uint32Array out = Napi::Uint32Array::New(env, l->nmsrs);
    memcpy(out.Data(), Trailing<uint32_t>(buf.data(), mv_off_msr_list_indices), l->nmsrs * sizeof(uint32_t));
    return out;
  }
  ThrowErrno(env, "KVM_GET_MSR_INDEX_LIST", E2BIG);
  return env.Undefined();
}

Napi::Value Kvm::Close(const Napi::CallbackInfo& info) {
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}

static void ExportConstants(Napi::Env env, Napi::Object exports) {
  Napi::Object c = Napi::Object::New(env);
#define C(x) c.Set(#x, Napi::Number::New(env, static_cast<double>(x)))
  C(KVM_EXIT_UNKNOWN); C(KVM_EXIT_EXCEPTION); C(KVM_EXIT_IO); C(KVM_EXIT_HYPERCALL); C(KVM_EXIT_DEBUG);
  C(KVM_EXIT_HLT); C(KVM_EXIT_MMIO); C(KVM_EXIT_IRQ_WINDOW_OPEN); C(KVM_EXIT_SHUTDOWN);
  C(KVM_EXIT_FAIL_ENTRY); C(KVM_EXIT_INTR); C(KVM_EXIT_SET_TPR); C(KVM_EXIT_TPR_ACCESS); C(KVM_EXIT_NMI);
  C(KVM_EXIT_INTERNAL_ERROR); C(KVM_EXIT_SYSTEM_EVENT); C(KVM_EXIT_IOAPIC_EOI); C(KVM_EXIT_HYPERV);
  C(KVM_EXIT_X86_RDMSR); C(KVM_EXIT_X86_WRMSR); C(KVM_EXIT_DIRTY_RING_FULL); C(KVM_EXIT_X86_BUS_LOCK);
  C(KVM_EXIT_IO_IN); C(KVM_EXIT_IO_OUT);
  C(KVM_INTERNAL_ERROR_EMULATION); C(KVM_INTERNAL_ERROR_SIMUL_EX); C(KVM_INTERNAL_ERROR_DELIVERY_EV);
  C(KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON); C(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES);
  C(KVM_SYSTEM_EVENT_SHUTDOWN); C(KVM_SYSTEM_EVENT_RESET); C(KVM_SYSTEM_EVENT_CRASH);
  C(KVM_MEM_LOG_DIRTY_PAGES); C(KVM_MEM_READONLY); C(KVM_CAP_READONLY_MEM);
  C(KVM_IRQ_ROUTING_IRQCHIP); C(KVM_IRQ_ROUTING_MSI);
  C(KVM_IRQCHIP_PIC_MASTER); C(KVM_IRQCHIP_PIC_SLAVE); C(KVM_IRQCHIP_IOAPIC);
  C(KVM_IRQFD_FLAG_DEASSIGN); C(KVM_IRQFD_FLAG_RESAMPLE);
  C(KVM_IOEVENTFD_FLAG_DATAMATCH); C(KVM_IOEVENTFD_FLAG_PIO); C(KVM_IOEVENTFD_FLAG_DEASSIGN);
  C(KVM_MP_STATE_RUNNABLE); C(KVM_MP_STATE_UNINITIALIZED); C(KVM_MP_STATE_INIT_RECEIVED);
  C(KVM_MP_STATE_HALTED); C(KVM_MP_STATE_SIPI_RECEIVED);
  C(KVM_CAP_NR_VCPUS); C(KVM_CAP_MAX_VCPUS); C(KVM_CAP_X86_DISABLE_EXITS); C(KVM_CAP_TSC_CONTROL);
  C(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2); C(KVM_CAP_DIRTY_LOG_RING); C(KVM_CAP_COALESCED_MMIO);
  C(KVM_CAP_COALESCED_PIO); C(KVM_CAP_SPLIT_IRQCHIP); C(KVM_CAP_X86_SMM); C(KVM_CAP_ADJUST_CLOCK);
  C(KVM_CAP_VCPU_EVENTS); C(KVM_CAP_XSAVE); C(KVM_CAP_XCRS); C(KVM_CAP_DEBUGREGS); C(KVM_CAP_KVMCLOCK_CTRL);
  C(KVM_CAP_GET_TSC_KHZ); C(KVM_CAP_EXIT_ON_EMULATION_FAILURE); C(KVM_CAP_HYPERV);
  C(KVM_PIT_SPEAKER_DUMMY); C(KVM_CLOCK_TSC_STABLE);
#undef C
  exports.Set("constants", c);

  // Byte offsets inside struct kvm_run, for the TypeScript run-area view.
  Napi::Object o = Napi::Object::New(env);
#define O(name, expr) o.Set(name, Napi::Number::New(env, static_cast<double>(offsetof(kvm_run, expr))))
  O("request_interrupt_window", request_interrupt_window);
  O("immediate_exit", immediate_exit);
  O("exit_reason", exit_reason);
  O("ready_for_interrupt_injection", ready_for_interrupt_injection);
  O("if_flag", if_flag);
  O("flags", flags);
  O("cr8", cr8);
  O("apic_base", apic_base);
  O("io_direction", io.direction);
  O("io_size", io.size);
  O("io_port", io.port);
  O("io_count", io.count);
  O("io_data_offset", io.data_offset);
  O("mmio_phys_addr", mmio.phys_addr);
  O("mmio_data", mmio.data);
  O("mmio_len", mmio.len);
  O("mmio_is_write", mmio.is_write);
  O("fail_entry_reason", fail_entry.hardware_entry_failure_reason);
  O("fail_entry_cpu", fail_entry.cpu);
  O("internal_suberror", internal.suberror);
  O("internal_ndata", internal.ndata);
  O("internal_data", internal.data);
  O("emulation_flags", emulation_failure.flags);
  O("emulation_insn_size", emulation_failure.insn_size);
  O("emulation_insn_bytes", emulation_failure.insn_bytes);
  O("system_event_type", system_event.type);
  O("system_event_ndata", system_event.ndata);
  O("system_event_data", system_event.data);
  O("ex_exception", ex.exception);
  O("ex_error_code", ex.error_code);
  O("msr_error", msr.error);
  O("msr_reason", msr.reason);
  O("msr_index", msr.index);
  O("msr_data", msr.data);
#undef O
  exports.Set("runOffsets", o);

  Napi::Object s = Napi::Object::New(env);
#define S(x) s.Set(#x, Napi::Number::New(env, static_cast<double>(sizeof(struct x))))
  S(kvm_regs); S(kvm_sregs); S(kvm_fpu); S(kvm_lapic_state); S(kvm_xcrs);
  s.Set("kvm_xsave", Napi::Number::New(env, static_cast<double>(mv_sizeof_kvm_xsave)));
  S(kvm_vcpu_events); S(kvm_mp_state); S(kvm_debugregs); S(kvm_irqchip); S(kvm_pit_state2);
  S(kvm_clock_data); S(kvm_run); S(kvm_segment); S(kvm_dtable);
#undef S
  exports.Set("structSizes", s);
}

void Kvm::Init(Napi::Env env, Napi::Object exports) {
  Napi::Function f = DefineClass(env, "Kvm",
                                 {
                                     InstanceMethod("apiVersion", &Kvm::ApiVersion),
                                     InstanceMethod("checkExtension", &Kvm::CheckExtension),
                                     InstanceMethod("supportedCpuid", &Kvm::SupportedCpuid),
                                     InstanceMethod("msrIndexList", &Kvm::MsrIndexList),
                                     InstanceMethod("close", &Kvm::Close),
                                 });
  ctor = new Napi::FunctionReference(Napi::Persistent(f));
  exports.Set("Kvm", f);
  ExportConstants(env, exports);
}

void InitKvmSystem(Napi::Env env, Napi::Object exports) { Kvm::Init(env, exports); }

}  // namespace mv
