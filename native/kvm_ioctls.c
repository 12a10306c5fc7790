/*
 * ioctl numbers computed by the C compiler. <linux/kvm.h> declares several
 * structs with zero-length trailing arrays (`entries[0]`), which g++ sizes
 * differently from gcc, so _IOWR(..., struct kvm_cpuid2) and friends encode
 * a different size in C++ and the kernel answers EINVAL. Every ioctl whose
 * number depends on such a struct is taken from here.
 */
#include <linux/kvm.h>

const unsigned long mv_KVM_GET_CPUID2 = KVM_GET_CPUID2;
const unsigned long mv_KVM_SET_CPUID2 = KVM_SET_CPUID2;
const unsigned long mv_KVM_GET_SUPPORTED_CPUID = KVM_GET_SUPPORTED_CPUID;
const unsigned long mv_KVM_GET_MSRS = KVM_GET_MSRS;
const unsigned long mv_KVM_SET_MSRS = KVM_SET_MSRS;
const unsigned long mv_KVM_GET_MSR_INDEX_LIST = KVM_GET_MSR_INDEX_LIST;
const unsigned long mv_KVM_GET_XSAVE = KVM_GET_XSAVE;
const unsigned long mv_KVM_SET_XSAVE = KVM_SET_XSAVE;
const unsigned long mv_KVM_SET_GSI_ROUTING = KVM_SET_GSI_ROUTING;
/* sizeof as C sees it, for buffers of these structs. */
const unsigned long mv_sizeof_kvm_xsave = sizeof(struct kvm_xsave);
/* Where the trailing arrays start, as C (and the kernel) lay them out. */
#include <stddef.h>
const unsigned long mv_off_cpuid2_entries = offsetof(struct kvm_cpuid2, entries);
const unsigned long mv_off_msrs_entries = offsetof(struct kvm_msrs, entries);
const unsigned long mv_off_msr_list_indices = offsetof(struct kvm_msr_list, indices);
const unsigned long mv_off_irq_routing_entries = offsetof(struct kvm_irq_routing, entries);
