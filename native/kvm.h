// Classes of the addon: Kvm (/dev/kvm), Vm (a KVM VM with its guest RAM,
// interrupt controller, eventfds and the exit hand-off of its vCPUs) and
// Vcpu (one vCPU: state get/set; its KVM_RUN thread is owned by the Vm).
#pragma once
#include <linux/kvm.h>
#include <pthread.h>

#include <atomic>
#include <memory>
#include <vector>

#include "common.h"

namespace mv {

class Kvm : public Napi::ObjectWrap<Kvm> {
 public:
  static Napi::FunctionReference* ctor;
  static void Init(Napi::Env env, Napi::Object exports);
  explicit Kvm(const Napi::CallbackInfo& info);
  ~Kvm();
  int fd() const { return fd_; }
  int mmapSize() const { return mmap_size_; }

 private:
  Napi::Value ApiVersion(const Napi::CallbackInfo& info);
  Napi::Value CheckExtension(const Napi::CallbackInfo& info);
  Napi::Value SupportedCpuid(const Napi::CallbackInfo& info);
  Napi::Value MsrIndexList(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  int fd_ = -1;
  int mmap_size_ = 0;
};

// One anonymous mapping of guest RAM. Shared by the Vm (which keeps it
// alive while a memory slot may point at it) and by every ArrayBuffer view
// given to JavaScript: it is unmapped when the last of them is gone.
struct RamRegion {
  uint8_t* base = nullptr;
  size_t size = 0;
  ~RamRegion();
};

// The exit hand-off between a vCPU thread and the JavaScript thread.
// 64 bytes per vCPU (no false sharing), visible to JavaScript as an
// Int32Array: [0] state, [1] kind, [2] errno, [3] sleeping.
enum MailboxState : int32_t { kRunning = 0, kPending = 1, kDone = 2 };
// kParked: a paused vCPU whose Paused post JavaScript has already taken;
// Pump() skips it until complete() releases it.
enum MailboxKind : int32_t { kKvmExit = 0, kPaused = 1, kRunError = 2, kStopped = 3, kParked = 4 };
struct alignas(64) Mailbox {
  std::atomic<int32_t> state{kRunning};
  int32_t kind = kKvmExit;
  int32_t err = 0;
  std::atomic<int32_t> sleeping{0};
  int32_t pad[12];
};
static_assert(sizeof(Mailbox) == 64, "mailbox is one cache line");

struct VcpuCore {
  int fd = -1;
  uint32_t id = 0;
  uint32_t index = 0;
  kvm_run* run = nullptr;
  size_t run_size = 0;
  pthread_t thread{};
  bool thread_started = false;
  std::atomic<bool> pause_req{false};
  std::atomic<bool> stop_req{false};
  ~VcpuCore();
};

class Vm : public Napi::ObjectWrap<Vm> {
 public:
  static Napi::FunctionReference* ctor;
  static void Init(Napi::Env env, Napi::Object exports);
  explicit Vm(const Napi::CallbackInfo& info);
  ~Vm();
  int fd() const { return fd_; }
  std::shared_ptr<VcpuCore> AddVcpu(Napi::Env env, uint32_t id);

  // Called on a vCPU thread.
  void Post(VcpuCore* core, int32_t kind, int32_t err);
  Mailbox* mailbox(uint32_t index) { return &mailboxes_[index]; }
  uint32_t spin_ns_vcpu() const { return spin_ns_vcpu_; }

 private:
  Napi::Value AllocRam(const Napi::CallbackInfo& info);
  Napi::Value RamView(const Napi::CallbackInfo& info);
  Napi::Value SetMemoryRegion(const Napi::CallbackInfo& info);
  Napi::Value GetDirtyLog(const Napi::CallbackInfo& info);
  Napi::Value SetTssAddr(const Napi::CallbackInfo& info);
  Napi::Value SetIdentityMapAddr(const Napi::CallbackInfo& info);
  Napi::Value CreateIrqchip(const Napi::CallbackInfo& info);
  Napi::Value CreatePit2(const Napi::CallbackInfo& info);
  Napi::Value PitReinject(const Napi::CallbackInfo& info);
  Napi::Value IrqLine(const Napi::CallbackInfo& info);
  Napi::Value SetGsiRouting(const Napi::CallbackInfo& info);
  Napi::Value SignalMsi(const Napi::CallbackInfo& info);
  Napi::Value Ioeventfd(const Napi::CallbackInfo& info);
  Napi::Value Irqfd(const Napi::CallbackInfo& info);
  Napi::Value GetState(const Napi::CallbackInfo& info);
  Napi::Value SetState(const Napi::CallbackInfo& info);
  Napi::Value EnableCap(const Napi::CallbackInfo& info);
  Napi::Value CheckExtension(const Napi::CallbackInfo& info);
  Napi::Value MailboxBuffer(const Napi::CallbackInfo& info);
  Napi::Value SetWakeHandler(const Napi::CallbackInfo& info);
  Napi::Value SetSpin(const Napi::CallbackInfo& info);
  Napi::Value StartVcpu(const Napi::CallbackInfo& info);
  Napi::Value Pump(const Napi::CallbackInfo& info);
  Napi::Value Complete(const Napi::CallbackInfo& info);
  Napi::Value Kick(const Napi::CallbackInfo& info);
  Napi::Value Stop(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);

  void CompleteIndex(uint32_t index);
  int32_t ScanPending();
  void StopThreads();

  int fd_ = -1;
  Napi::ObjectReference kvm_ref_;
  std::vector<std::shared_ptr<RamRegion>> ram_;
  // Memory slot sizes, to check dirty-log bitmaps against.
  std::vector<uint64_t> slot_sizes_;
  std::vector<std::shared_ptr<VcpuCore>> vcpus_;
  Mailbox* mailboxes_ = nullptr;
  std::shared_ptr<void> mailbox_owner_;
  uint32_t max_vcpus_ = 0;
  uint32_t scan_start_ = 0;
  uint32_t spin_ns_vcpu_ = 200000;
  uint32_t spin_ns_js_ = 50000;
  // 1 while JavaScript is not inside Pump(): a vCPU that posts an exit
  // then wakes the event loop through the threadsafe function.
  std::atomic<int32_t> js_idle_{1};
  std::atomic<int32_t> wake_queued_{0};
  Napi::ThreadSafeFunction wake_;
  bool wake_set_ = false;
};

class Vcpu : public Napi::ObjectWrap<Vcpu> {
 public:
  static Napi::FunctionReference* ctor;
  static void Init(Napi::Env env, Napi::Object exports);
  explicit Vcpu(const Napi::CallbackInfo& info);

 private:
  Napi::Value RunArea(const Napi::CallbackInfo& info);
  Napi::Value SetCpuid(const Napi::CallbackInfo& info);
  Napi::Value GetCpuid(const Napi::CallbackInfo& info);
  Napi::Value GetState(const Napi::CallbackInfo& info);
  Napi::Value SetState(const Napi::CallbackInfo& info);
  Napi::Value GetMsrs(const Napi::CallbackInfo& info);
  Napi::Value SetMsrs(const Napi::CallbackInfo& info);
  Napi::Value TscKhz(const Napi::CallbackInfo& info);
  Napi::Value Translate(const Napi::CallbackInfo& info);
  Napi::Value Index(const Napi::CallbackInfo& info);
  std::shared_ptr<VcpuCore> core_;
  Napi::ObjectReference vm_ref_;
};

// The real-time signal that kicks a vCPU thread out of KVM_RUN (kvm_vm_exits.cc).
int KickSignal();

}  // namespace mv
