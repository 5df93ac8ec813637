# Finds the four third-party libraries and exposes them as imported targets
# lcow::leveldb, lcow::msgpack, lcow::cmocka, lcow::pcre2.
#
# Natively they come from Debian's -dev packages. For win64 they come from
# build/deps/win64 (built by scripts/install-deps.sh from Debian's source
# packages with mingw); the toolchain file puts that prefix on
# CMAKE_FIND_ROOT_PATH, so the same find_* calls work for both.

find_package(Threads REQUIRED)

function(lcow_import name header)
  cmake_parse_arguments(ARG "" "" "NAMES;DEFINES;LIBS" ${ARGN})
  string(TOUPPER ${name} upper)
  find_path(${upper}_INCLUDE_DIR ${header})
  find_library(${upper}_LIBRARY NAMES ${ARG_NAMES})
  if(NOT ${upper}_INCLUDE_DIR OR NOT ${upper}_LIBRARY)
    message(FATAL_ERROR "lcowsnap: ${name} not found (header ${header}, library ${ARG_NAMES}). "
                        "Run scripts/install-deps.sh (or `make deps`).")
  endif()
  add_library(lcow::${name} INTERFACE IMPORTED GLOBAL)
  target_include_directories(lcow::${name} INTERFACE ${${upper}_INCLUDE_DIR})
  target_link_libraries(lcow::${name} INTERFACE ${${upper}_LIBRARY} ${ARG_LIBS})
  if(ARG_DEFINES)
    target_compile_definitions(lcow::${name} INTERFACE ${ARG_DEFINES})
  endif()
endfunction()

if(WIN32)
  # Static archives only: the exe must run with no extra DLLs. LevelDB is C++
  # built with the posix thread model, so libstdc++ and winpthread come along.
  set(CMAKE_FIND_LIBRARY_SUFFIXES .a)
  lcow_import(leveldb leveldb/c.h NAMES leveldb LIBS stdc++ Threads::Threads)
  lcow_import(msgpack msgpack.h NAMES msgpack-c msgpackc)
  lcow_import(cmocka cmocka.h NAMES cmocka-static cmocka LIBS Threads::Threads)
  lcow_import(pcre2 pcre2.h NAMES pcre2-8 DEFINES PCRE2_STATIC PCRE2_CODE_UNIT_WIDTH=8)
else()
  lcow_import(leveldb leveldb/c.h NAMES leveldb LIBS Threads::Threads)
  lcow_import(msgpack msgpack.h NAMES msgpackc msgpack-c)
  lcow_import(cmocka cmocka.h NAMES cmocka)
  lcow_import(pcre2 pcre2.h NAMES pcre2-8 DEFINES PCRE2_CODE_UNIT_WIDTH=8)
endif()
