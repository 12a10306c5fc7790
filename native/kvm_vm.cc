// Vm: one KVM virtual machine. Guest RAM, memory slots, the in-kernel
// irqchip and PIT, IRQ lines, MSI, irqfd/ioeventfd, VM-level state for
// snapshots. The hand-off of vCPU exits to JavaScript (vCPU threads,
// mailboxes, Pump) is in kvm_vm_exits.cc.

#include <linux/futex.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdlib>

#include "kvm.h"

namespace mv {

Napi::FunctionReference* Vm::ctor = nullptr;

static void KickHandler(int) {}


RamRegion::~RamRegion() {
  if (base) munmap(base, size);
}

VcpuCore::~VcpuCore() {
  if (run) munmap(run, run_size);
  if (fd >= 0) close(fd);
}

struct MailboxBlock {
  Mailbox* boxes = nullptr;
  ~MailboxBlock() { free(boxes); }
};

// ArrayBuffers handed to JavaScript keep their backing memory alive through
// a heap-allocated shared_ptr released by the finalizer.
template <typename T>
static Napi::ArrayBuffer SharedView(Napi::Env env, void* data, size_t len, const std::shared_ptr<T>& owner) {
  auto* hint = new std::shared_ptr<T>(owner);
  return Napi::ArrayBuffer::New(
      env, data, len, [](Napi::Env, void*, std::shared_ptr<T>* h) { delete h; }, hint);
}

Vm::Vm(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Vm>(info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsObject() || !info[0].As<Napi::Object>().InstanceOf(Kvm::ctor->Value())) {
    ThrowType(env, "new Vm(kvm, maxVcpus): kvm must be a Kvm");
    return;
  }
  if (!ArgU32(info, 1, "maxVcpus", &max_vcpus_)) return;
  if (max_vcpus_ == 0 || max_vcpus_ > 1024) {
    ThrowRange(env, "maxVcpus must be 1..1024");
    return;
  }
  Kvm* kvm = Kvm::Unwrap(info[0].As<Napi::Object>());
  kvm_ref_ = Napi::Persistent(info[0].As<Napi::Object>());
  fd_ = IoctlVal(kvm->fd(), KVM_CREATE_VM, 0);
  if (fd_ < 0) {
    ThrowErrno(env, "KVM_CREATE_VM", errno);
    return;
  }
  void* mem = nullptr;
  if (posix_memalign(&mem, 64, sizeof(Mailbox) * max_vcpus_) != 0) {
    ThrowErrno(env, "posix_memalign", ENOMEM);
    return;
  }
  mailboxes_ = static_cast<Mailbox*>(mem);
  for (uint32_t i = 0; i < max_vcpus_; i++) new (&mailboxes_[i]) Mailbox();
  auto block = std::make_shared<MailboxBlock>();
  block->boxes = mailboxes_;
  mailbox_owner_ = block;
}

Vm::~Vm() {
  StopThreads();
  vcpus_.clear();
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

std::shared_ptr<VcpuCore> Vm::AddVcpu(Napi::Env env, uint32_t id) {
  if (fd_ < 0) {
    ThrowErrno(env, "KVM_CREATE_VCPU", EBADF);
    return nullptr;
  }
  if (vcpus_.size() >= max_vcpus_) {
    ThrowRange(env, "more vCPUs than the Vm was created for");
    return nullptr;
  }
  Kvm* kvm = Kvm::Unwrap(kvm_ref_.Value());
  auto core = std::make_shared<VcpuCore>();
  core->id = id;
  core->index = static_cast<uint32_t>(vcpus_.size());
  core->fd = IoctlVal(fd_, KVM_CREATE_VCPU, id);
  if (core->fd < 0) {
    ThrowErrno(env, "KVM_CREATE_VCPU", errno);
    return nullptr;
  }
  core->run_size = kvm->mmapSize();
  void* p = mmap(nullptr, core->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, core->fd, 0);
  if (p == MAP_FAILED) {
    ThrowErrno(env, "mmap(kvm_run)", errno);
    return nullptr;
  }
  core->run = static_cast<kvm_run*>(p);
  vcpus_.push_back(core);
  return core;
}

Napi::Value Vm::AllocRam(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t size;
  if (!ArgU64(info, 0, "size", &size)) return env.Undefined();
  if (size == 0 || (size & 0xfff)) {
    ThrowRange(env, "RAM size must be a non-zero multiple of 4096");
    return env.Undefined();
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    ThrowErrno(env, "mmap(guest RAM)", errno);
    return env.Undefined();
  }
  madvise(p, size, MADV_HUGEPAGE);
  auto r = std::make_shared<RamRegion>();
  r->base = static_cast<uint8_t*>(p);
  r->size = size;
  ram_.push_back(r);
  return Napi::Number::New(env, static_cast<double>(ram_.size() - 1));
}

// An ArrayBuffer over [offset, offset+length) of RAM region `id`.
Napi::Value Vm::RamView(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t id;
  uint64_t off, len;
  if (!ArgU32(info, 0, "id", &id) || !ArgU64(info, 1, "offset", &off) || !ArgU64(info, 2, "length", &len))
    return env.Undefined();
  if (id >= ram_.size() || off > ram_[id]->size || len > ram_[id]->size - off || len == 0) {
    ThrowRange(env, "RAM view outside the region");
    return env.Undefined();
  }
  return SharedView(env, ram_[id]->base + off, len, ram_[id]);
}

Napi::Value Vm::SetMemoryRegion(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t slot, flags, id;
  uint64_t gpa, size, off;
  if (!ArgU32(info, 0, "slot", &slot) || !ArgU32(info, 1, "flags", &flags) || !ArgU64(info, 2, "gpa", &gpa) ||
      !ArgU64(info, 3, "size", &size) || !ArgU32(info, 4, "ramId", &id) || !ArgU64(info, 5, "ramOffset", &off))
    return env.Undefined();
  kvm_userspace_memory_region r{};
  r.slot = slot;
  r.flags = flags;
  r.guest_phys_addr = gpa;
  r.memory_size = size;
  if (size != 0) {
    if (id >= ram_.size() || off > ram_[id]->size || size > ram_[id]->size - off || (off & 0xfff) ||
        (gpa & 0xfff) || (size & 0xfff)) {
      ThrowRange(env, "memory slot outside its RAM region or not page aligned");
      return env.Undefined();
    }
    r.userspace_addr = reinterpret_cast<uint64_t>(ram_[id]->base + off);
  }
  if (Ioctl(fd_, KVM_SET_USER_MEMORY_REGION, &r) < 0) {
    ThrowErrno(env, "KVM_SET_USER_MEMORY_REGION", errno);
    return env.Undefined();
  }
  if (slot_sizes_.size() <= (slot & 0xffff)) slot_sizes_.resize((slot & 0xffff) + 1, 0);
  slot_sizes_[slot & 0xffff] = size;
  return env.Undefined();
}

Napi::Value Vm::GetDirtyLog(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t slot;
  uint8_t* data;
  size_t len;
  if (!ArgU32(info, 0, "slot", &slot) || !ArgBytes(info, 1, "bitmap", &data, &len)) return env.Undefined();
  uint64_t pages = slot < slot_sizes_.size() ? slot_sizes_[slot] / 4096 : 0;
  if (pages == 0) {
    ThrowRange(env, "no memory slot " + std::to_string(slot));
    return env.Undefined();
  }
  if (len % 8 || len < ((pages + 63) / 64) * 8) {
    ThrowRange(env, "dirty bitmap must be a multiple of 8 bytes, at least one bit per page of the slot");
    return env.Undefined();
  }
  kvm_dirty_log d{};
  d.slot = slot;
  d.dirty_bitmap = data;
  if (Ioctl(fd_, KVM_GET_DIRTY_LOG, &d) < 0) ThrowErrno(env, "KVM_GET_DIRTY_LOG", errno);
  return env.Undefined();
}

Napi::Value Vm::SetTssAddr(const Napi::CallbackInfo& info) {
  uint32_t a;
  if (!ArgU32(info, 0, "addr", &a)) return info.Env().Undefined();
  if (IoctlVal(fd_, KVM_SET_TSS_ADDR, a) < 0) ThrowErrno(info.Env(), "KVM_SET_TSS_ADDR", errno);
  return info.Env().Undefined();
}

Napi::Value Vm::SetIdentityMapAddr(const Napi::CallbackInfo& info) {
  uint64_t a;
  if (!ArgU64(info, 0, "addr", &a)) return info.Env().Undefined();
  if (Ioctl(fd_, KVM_SET_IDENTITY_MAP_ADDR, &a) < 0) ThrowErrno(info.Env(), "KVM_SET_IDENTITY_MAP_ADDR", errno);
  return info.Env().Undefined();
}

Napi::Value Vm::CreateIrqchip(const Napi::CallbackInfo& info) {
  if (IoctlVal(fd_, KVM_CREATE_IRQCHIP, 0) < 0) ThrowErrno(info.Env(), "KVM_CREATE_IRQCHIP", errno);
  return info.Env().Undefined();
}

Napi::Value Vm::CreatePit2(const Napi::CallbackInfo& info) {
  uint32_t flags = 0;
  if (info.Length() > 0 && !ArgU32(info, 0, "flags", &flags)) return info.Env().Undefined();
  kvm_pit_config c{};
  c.flags = flags;
  if (Ioctl(fd_, KVM_CREATE_PIT2, &c) < 0) ThrowErrno(info.Env(), "KVM_CREATE_PIT2", errno);
  return info.Env().Undefined();
}

// KVM_REINJECT_CONTROL: whether the in-kernel PIT replays timer ticks the
// guest missed (KVM's default, QEMU's lost_tick_policy=delay) or drops them
// (discard).
Napi::Value Vm::PitReinject(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsBoolean()) {
    ThrowType(info.Env(), "pitReinject(on: boolean)");
    return info.Env().Undefined();
  }
  kvm_reinject_control c{};
  c.pit_reinject = info[0].As<Napi::Boolean>().Value() ? 1 : 0;
  if (Ioctl(fd_, KVM_REINJECT_CONTROL, &c) < 0) ThrowErrno(info.Env(), "KVM_REINJECT_CONTROL", errno);
  return info.Env().Undefined();
}

Napi::Value Vm::IrqLine(const Napi::CallbackInfo& info) {
  uint32_t irq, level;
  if (!ArgU32(info, 0, "irq", &irq) || !ArgU32(info, 1, "level", &level)) return info.Env().Undefined();
  kvm_irq_level l{};
  l.irq = irq;
  l.level = level ? 1 : 0;
  if (Ioctl(fd_, KVM_IRQ_LINE, &l) < 0) ThrowErrno(info.Env(), "KVM_IRQ_LINE", errno);
  return info.Env().Undefined();
}

// entries: Uint32Array, 7 words per route: gsi, type, flags, u0..u3 where
// for KVM_IRQ_ROUTING_IRQCHIP u0=irqchip u1=pin, and for
// KVM_IRQ_ROUTING_MSI u0=address_lo u1=address_hi u2=data u3=devid.
Napi::Value Vm::SetGsiRouting(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array) {
    ThrowType(env, "routes must be a Uint32Array");
    return env.Undefined();
  }
  Napi::Uint32Array a = info[0].As<Napi::Uint32Array>();
  if (a.ElementLength() % 7) {
    ThrowRange(env, "routes must hold 7 words per entry");
    return env.Undefined();
  }
  size_t n = a.ElementLength() / 7;
  std::vector<uint8_t> buf(mv_off_irq_routing_entries + n * sizeof(kvm_irq_routing_entry));
  auto* r = reinterpret_cast<kvm_irq_routing*>(buf.data());
  auto* entries = Trailing<kvm_irq_routing_entry>(buf.data(), mv_off_irq_routing_entries);
  r->nr = n;
  for (size_t i = 0; i < n; i++) {
    const uint32_t* w = a.Data() + i * 7;
    kvm_irq_routing_entry& e = entries[i];
    e.gsi = w[0];
    e.type = w[1];
    e.flags = w[2];
    if (w[1] == KVM_IRQ_ROUTING_IRQCHIP) {
      e.u.irqchip.irqchip = w[3];
      e.u.irqchip.pin = w[4];
    } else if (w[1] == KVM_IRQ_ROUTING_MSI) {
      e.u.msi.address_lo = w[3];
      e.u.msi.address_hi = w[4];
      e.u.msi.data = w[5];
      e.u.msi.devid = w[6];
    } else {
      ThrowRange(env, "unsupported route type " + std::to_string(w[1]));
      return env.Undefined();
    }
  }
  if (Ioctl(fd_, KVM_SET_GSI_ROUTING, r) < 0) ThrowErrno(env, "KVM_SET_GSI_ROUTING", errno);
  return env.Undefined();
}

Napi::Value Vm::SignalMsi(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint32_t lo, hi, data;
  if (!ArgU32(info, 0, "addressLo", &lo) || !ArgU32(info, 1, "addressHi", &hi) || !ArgU32(info, 2, "data", &data))
    return env.Undefined();
  kvm_msi m{};
  m.address_lo = lo;
  m.address_hi = hi;
  m.data = data;
  int r = Ioctl(fd_, KVM_SIGNAL_MSI, &m);
  if (r < 0) {
    ThrowErrno(env, "KVM_SIGNAL_MSI", errno);
    return env.Undefined();
  }
  return Napi::Number::New(env, r);
}

// ioeventfd(fd, addr, len, flags, datamatch)
Napi::Value Vm::Ioeventfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd;
  uint64_t addr, datamatch = 0;
  uint32_t len, flags;
  if (!ArgI32(info, 0, "fd", &fd) || !ArgU64(info, 1, "addr", &addr) || !ArgU32(info, 2, "len", &len) ||
      !ArgU32(info, 3, "flags", &flags))
    return env.Undefined();
  if (info.Length() > 4 && !ArgU64(info, 4, "datamatch", &datamatch)) return env.Undefined();
  kvm_ioeventfd e{};
  e.fd = fd;
  e.addr = addr;
  e.len = len;
  e.flags = flags;
  e.datamatch = datamatch;
  if (Ioctl(fd_, KVM_IOEVENTFD, &e) < 0) ThrowErrno(env, "KVM_IOEVENTFD", errno);
  return env.Undefined();
}

// irqfd(fd, gsi, flags, resamplefd)
Napi::Value Vm::Irqfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd, resample = -1;
  uint32_t gsi, flags = 0;
  if (!ArgI32(info, 0, "fd", &fd) || !ArgU32(info, 1, "gsi", &gsi)) return env.Undefined();
  if (info.Length() > 2 && !ArgU32(info, 2, "flags", &flags)) return env.Undefined();
  if (info.Length() > 3 && !ArgI32(info, 3, "resamplefd", &resample)) return env.Undefined();
  kvm_irqfd q{};
  q.fd = fd;
  q.gsi = gsi;
  q.flags = flags;
  q.resamplefd = resample < 0 ? 0 : resample;
  if (Ioctl(fd_, KVM_IRQFD, &q) < 0) ThrowErrno(env, "KVM_IRQFD", errno);
  return env.Undefined();
}

// VM-level state for snapshots: getState("irqchip", chipId) | ("pit2") | ("clock")
Napi::Value Vm::GetState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowType(env, "kind must be a string");
    return env.Undefined();
  }
  std::string kind = info[0].As<Napi::String>().Utf8Value();
  if (kind == "irqchip") {
    uint32_t chip;
    if (!ArgU32(info, 1, "chipId", &chip)) return env.Undefined();
    Napi::Buffer<uint8_t> b = Napi::Buffer<uint8_t>::New(env, sizeof(kvm_irqchip));
    auto* c = reinterpret_cast<kvm_irqchip*>(b.Data());
    memset(c, 0, sizeof(*c));
    c->chip_id = chip;
    if (Ioctl(fd_, KVM_GET_IRQCHIP, c) < 0) ThrowErrno(env, "KVM_GET_IRQCHIP", errno);
    return b;
  }
  if (kind == "pit2") {
    Napi::Buffer<uint8_t> b = Napi::Buffer<uint8_t>::New(env, sizeof(kvm_pit_state2));
    memset(b.Data(), 0, b.Length());
    if (Ioctl(fd_, KVM_GET_PIT2, b.Data()) < 0) ThrowErrno(env, "KVM_GET_PIT2", errno);
    return b;
  }
  if (kind == "clock") {
    Napi::Buffer<uint8_t> b = Napi::Buffer<uint8_t>::New(env, sizeof(kvm_clock_data));
    memset(b.Data(), 0, b.Length());
    if (Ioctl(fd_, KVM_GET_CLOCK, b.Data()) < 0) ThrowErrno(env, "KVM_GET_CLOCK", errno);
    return b;
  }
  ThrowRange(env, "unknown VM state kind " + kind);
  return env.Undefined();
}

Napi::Value Vm::SetState(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString()) {
    ThrowType(env, "setState(kind, buffer)");
    return env.Undefined();
  }
  std::string kind = info[0].As<Napi::String>().Utf8Value();
  uint8_t* data;
  size_t len;
  if (!ArgBytes(info, 1, "state", &data, &len)) return env.Undefined();
  struct K {
    const char* name;
    size_t size;
    unsigned long req;
    const char* ioctl;
  };
  static const K kinds[] = {{"irqchip", sizeof(kvm_irqchip), KVM_SET_IRQCHIP, "KVM_SET_IRQCHIP"},
                            {"pit2", sizeof(kvm_pit_state2), KVM_SET_PIT2, "KVM_SET_PIT2"},
                            {"clock", sizeof(kvm_clock_data), KVM_SET_CLOCK, "KVM_SET_CLOCK"}};
  for (const K& k : kinds) {
    if (kind != k.name) continue;
    if (len != k.size) {
      ThrowRange(env, std::string(k.name) + " state must be " + std::to_string(k.size) + " bytes");
      return env.Undefined();
    }
    std::vector<uint8_t> copy(data, data + len);
    if (Ioctl(fd_, k.req, copy.data()) < 0) ThrowErrno(env, k.ioctl, errno);
    return env.Undefined();
  }
  ThrowRange(env, "unknown VM state kind " + kind);
  return env.Undefined();
}

Napi::Value Vm::EnableCap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  kvm_enable_cap c{};
  if (!ArgU32(info, 0, "cap", &c.cap)) return env.Undefined();
  for (size_t i = 1; i < info.Length() && i <= 4; i++)
  {
    uint64_t v;
    if (!ArgU64(info, i, "arg", &v)) return env.Undefined();
    c.args[i - 1] = v;
  }
  if (Ioctl(fd_, KVM_ENABLE_CAP, &c) < 0) ThrowErrno(env, "KVM_ENABLE_CAP", errno);
  return env.Undefined();
}

Napi::Value Vm::CheckExtension(const Napi::CallbackInfo& info) {
  uint32_t cap;
  if (!ArgU32(info, 0, "cap", &cap)) return info.Env().Undefined();
  int r = IoctlVal(fd_, KVM_CHECK_EXTENSION, cap);
  return Napi::Number::New(info.Env(), r < 0 ? 0 : r);
}

Napi::Value Vm::MailboxBuffer(const Napi::CallbackInfo& info) {
  return SharedView(info.Env(), mailboxes_, sizeof(Mailbox) * max_vcpus_, mailbox_owner_);
}

Napi::Value Vm::SetWakeHandler(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) {
    ThrowType(env, "setWakeHandler(fn)");
    return env.Undefined();
  }
  if (wake_set_) wake_.Release();
  wake_ = Napi::ThreadSafeFunction::New(env, info[0].As<Napi::Function>(), "mvisor-vcpu-wake", 0, 1);
  wake_set_ = true;
  return env.Undefined();
}

// setSpin(vcpuSpinNs, jsSpinNs)
Napi::Value Vm::SetSpin(const Napi::CallbackInfo& info) {
  if (!ArgU32(info, 0, "vcpuSpinNs", &spin_ns_vcpu_) || !ArgU32(info, 1, "jsSpinNs", &spin_ns_js_))
    return info.Env().Undefined();
  return info.Env().Undefined();
}

Napi::Value Vm::Close(const Napi::CallbackInfo& info) {
  StopThreads();
  if (wake_set_) {
    wake_.Release();
    wake_set_ = false;
  }
  vcpus_.clear();
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  return info.Env().Undefined();
}

void Vm::Init(Napi::Env env, Napi::Object exports) {
  struct sigaction sa{};
  sa.sa_handler = KickHandler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
  sigaction(KickSignal(), &sa, nullptr);
  Napi::Function f = DefineClass(env, "Vm",
                                 {
                                     InstanceMethod("allocRam", &Vm::AllocRam),
                                     InstanceMethod("ramView", &Vm::RamView),
                                     InstanceMethod("setMemoryRegion", &Vm::SetMemoryRegion),
                                     InstanceMethod("getDirtyLog", &Vm::GetDirtyLog),
                                     InstanceMethod("setTssAddr", &Vm::SetTssAddr),
                                     InstanceMethod("setIdentityMapAddr", &Vm::SetIdentityMapAddr),
                                     InstanceMethod("createIrqchip", &Vm::CreateIrqchip),
                                     InstanceMethod("createPit2", &Vm::CreatePit2),
                                     InstanceMethod("irqLine", &Vm::IrqLine),
                                     InstanceMethod("pitReinject", &Vm::PitReinject),
                                     InstanceMethod("setGsiRouting", &Vm::SetGsiRouting),
                                     InstanceMethod("signalMsi", &Vm::SignalMsi),
                                     InstanceMethod("ioeventfd", &Vm::Ioeventfd),
                                     InstanceMethod("irqfd", &Vm::Irqfd),
                                     InstanceMethod("getState", &Vm::GetState),
                                     InstanceMethod("setState", &Vm::SetState),
                                     InstanceMethod("enableCap", &Vm::EnableCap),
                                     InstanceMethod("checkExtension", &Vm::CheckExtension),
                                     InstanceMethod("mailboxBuffer", &Vm::MailboxBuffer),
                                     InstanceMethod("setWakeHandler", &Vm::SetWakeHandler),
                                     InstanceMethod("setSpin", &Vm::SetSpin),
                                     InstanceMethod("startVcpu", &Vm::StartVcpu),
                                     InstanceMethod("pump", &Vm::Pump),
                                     InstanceMethod("complete", &Vm::Complete),
                                     InstanceMethod("kick", &Vm::Kick),
                                     InstanceMethod("stop", &Vm::Stop),
                                     InstanceMethod("close", &Vm::Close),
                                 });
  ctor = new Napi::FunctionReference(Napi::Persistent(f));
  exports.Set("Vm", f);
}

void InitKvmVm(Napi::Env env, Napi::Object exports) { Vm::Init(env, exports); }

}  // namespace mv
