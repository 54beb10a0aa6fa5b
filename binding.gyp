# The default CPU build, run by `npm install` through node-gyp.
# Sources come from native/sources.json (the one list shared with CMakeLists.txt).
# Each x86 ISA variant is a static library with its own flags; the runtime dispatcher
# (native/core/dispatch.cpp) picks the variant from the detected CPU features.
{
  "variables": {
    "lowbit_common": "<!(node -p \"require('./native/sources.json').common.join(' ')\")",
    "lowbit_avx2": "<!(node -p \"require('./native/sources.json').x86_avx2.join(' ')\")",
    "lowbit_avx512": "<!(node -p \"require('./native/sources.json').x86_avx512.join(' ')\")",
    "lowbit_avx512vnni": "<!(node -p \"require('./native/sources.json').x86_avx512vnni.join(' ')\")",
    "lowbit_avx512bf16": "<!(node -p \"require('./native/sources.json').x86_avx512bf16.join(' ')\")",
    "lowbit_neon": "<!(node -p \"require('./native/sources.json').arm_neon.join(' ')\")",
    "lowbit_neon_dotprod": "<!(node -p \"require('./native/sources.json').arm_neon_dotprod.join(' ')\")",
    "lowbit_neon_dotprod_flags": "<!(node -p \"require('./native/sources.json').flags.arm_neon_dotprod.join(' ')\")",
    "lowbit_avx2_flags": "<!(node -p \"require('./native/sources.json').flags.x86_avx2.join(' ')\")",
    "lowbit_avx512_flags": "<!(node -p \"require('./native/sources.json').flags.x86_avx512.join(' ')\")",
    "lowbit_avx512vnni_flags": "<!(node -p \"require('./native/sources.json').flags.x86_avx512vnni.join(' ')\")",
    "lowbit_avx512bf16_flags": "<!(node -p \"require('./native/sources.json').flags.x86_avx512bf16.join(' ')\")"
  },
  "target_defaults": {
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS"],
    "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
    "cflags_cc": ["-std=c++17", "-fexceptions", "-O3", "-Wall", "-Wextra", "-fvisibility=hidden", "-ffp-contract=off"],
    "cflags": ["-O3"],
    "xcode_settings": {
      "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
      "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
      "OTHER_CPLUSPLUSFLAGS": ["-O3", "-Wall", "-Wextra"]
    },
    "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1, "AdditionalOptions": ["/std:c++17"] } }
  },
  "targets": [
    {
      "target_name": "lowbit",
      "sources": ["<@(lowbit_common)"],
      "libraries": ["-lpthread", "-ldl"],
      "conditions": [
        ["target_arch=='x64' and OS!='win'", {
          "defines": ["LOWBIT_HAVE_X86_VARIANTS=1"],
          "dependencies": ["lowbit_avx2", "lowbit_avx512", "lowbit_avx512vnni", "lowbit_avx512bf16"]
        }],
        ["target_arch=='arm64'", {
          "defines": ["LOWBIT_HAVE_NEON_VARIANTS=1"],
          "sources": ["<@(lowbit_neon)"],
          "dependencies": ["lowbit_neon_dotprod"]
        }]
      ]
    }
  ],
  "conditions": [
    ["target_arch=='x64' and OS!='win'", {
      "targets": [
        {
          "target_name": "lowbit_avx2",
          "type": "static_library",
          "sources": ["<@(lowbit_avx2)"],
          "cflags_cc": ["<@(lowbit_avx2_flags)", "-fPIC"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["<@(lowbit_avx2_flags)"] }
        },
        {
          "target_name": "lowbit_avx512",
          "type": "static_library",
          "sources": ["<@(lowbit_avx512)"],
          "cflags_cc": ["<@(lowbit_avx512_flags)", "-fPIC"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["<@(lowbit_avx512_flags)"] }
        },
        {
          "target_name": "lowbit_avx512vnni",
          "type": "static_library",
          "sources": ["<@(lowbit_avx512vnni)"],
          "cflags_cc": ["<@(lowbit_avx512vnni_flags)", "-fPIC"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["<@(lowbit_avx512vnni_flags)"] }
        },
        {
          "target_name": "lowbit_avx512bf16",
          "type": "static_library",
          "sources": ["<@(lowbit_avx512bf16)"],
          "cflags_cc": ["<@(lowbit_avx512bf16_flags)", "-fPIC"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["<@(lowbit_avx512bf16_flags)"] }
        }
      ]
    }],
    ["target_arch=='arm64'", {
      "targets": [
        {
          "target_name": "lowbit_neon_dotprod",
          "type": "static_library",
          "sources": ["<@(lowbit_neon_dotprod)"],
          "defines": ["LOWBIT_HAVE_NEON_VARIANTS=1"],
          "cflags_cc": ["<@(lowbit_neon_dotprod_flags)", "-fPIC"],
          "xcode_settings": { "OTHER_CPLUSPLUSFLAGS": ["<@(lowbit_neon_dotprod_flags)"] }
        }
      ]
    }]
  ]
}
