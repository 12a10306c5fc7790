{
  "targets": [
    {
      "target_name": "mvisor_kvm",
      "sources": ["native/addon.cc", "native/kvm_system.cc", "native/kvm_vm.cc", "native/kvm_vm_exits.cc", "native/kvm_vcpu.cc", "native/fdutil.cc", "native/kvm_ioctls.c"],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fno-exceptions"],
      "cflags_cc!": ["-fno-rtti"],
      "libraries": ["-lpthread"]
    }
  ]
}
