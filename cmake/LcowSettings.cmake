# Compiler flags shared by every target, and the source-globbing helper that
# keeps platform files (*_win.c / *_posix.c) out of the other build.

if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  add_compile_options(-Wall -Wextra -Werror -Wformat=2 -Wno-missing-field-initializers
                      -Wno-unused-parameter)
  if(CMAKE_C_COMPILER_ID STREQUAL "GNU")
    # Messages are deliberately truncated to fixed buffers.
    add_compile_options(-Wno-format-truncation)
  endif()
endif()

add_compile_definitions(LCOW_VERSION="${PROJECT_VERSION}")

if(WIN32)
  # W functions only; strings are UTF-8 inside lcowsnap and UTF-16 at the API.
  add_compile_definitions(UNICODE _UNICODE WIN32_LEAN_AND_MEAN _WIN32_WINNT=0x0A00
                          __USE_MINGW_ANSI_STDIO=1)
  # Static exe: without it Wine silently exits 53 for missing libstdc++/winpthread DLLs.
  add_link_options(-static)
else()
  add_compile_definitions(_GNU_SOURCE)
endif()

if(LCOW_FAULT_INJECTION)
  add_compile_definitions(LCOW_FAULT_INJECTION=1)
endif()

if(LCOW_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

if(LCOW_FUZZ)
  # Instrument every library for coverage, so libFuzzer sees the code under
  # test and not only the harness; fuzz targets add -fsanitize=fuzzer.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
