# Finds the third-party libraries and exposes them as imported targets:
#   lcow::leveldb, lcow::msgpack, lcow::cmocka, lcow::pcre2,
#   lcow::zlib, lcow::isal (ISA-L: gzip decoding), lcow::zstd, lcow::archive (libarchive), lcow::nettle,
#   lcow::nghttp2, lcow::protobufc (the protobuf-c runtime),
# and the protobuf-c code generator as LCOW_PROTOC_C (a host program).
#
# Natively they come from Debian's -dev packages. For win64 they come from
# build/deps/win64 (built by scripts/install-deps.sh from Debian's source
# packages with mingw); the toolchain file puts that prefix on
# CMAKE_FIND_ROOT_PATH, so the same find_* calls work for both. protoc-c is
# always Debian's (protobuf-c-compiler): it runs at build time, on the host.

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
  lcow_import(zlib zlib.h NAMES z)
  lcow_import(isal isa-l/igzip_lib.h NAMES isal)
  lcow_import(zstd zstd.h NAMES zstd)
  # Without LIBARCHIVE_STATIC / NGHTTP2_STATICLIB their headers declare every
  # function __declspec(dllimport), and the static link fails. libarchive's
  # Windows code (CryptGenRandom, file APIs) needs only the system libraries
  # mingw links by default (kernel32, advapi32).
  lcow_import(archive archive.h NAMES archive DEFINES LIBARCHIVE_STATIC)
  lcow_import(nettle nettle/sha2.h NAMES nettle)
  lcow_import(nghttp2 nghttp2/nghttp2.h NAMES nghttp2 DEFINES NGHTTP2_STATICLIB)
  lcow_import(protobufc protobuf-c/protobuf-c.h NAMES protobuf-c)
else()
  lcow_import(leveldb leveldb/c.h NAMES leveldb LIBS Threads::Threads)
  lcow_import(msgpack msgpack.h NAMES msgpackc msgpack-c)
  lcow_import(cmocka cmocka.h NAMES cmocka)
  lcow_import(pcre2 pcre2.h NAMES pcre2-8 DEFINES PCRE2_CODE_UNIT_WIDTH=8)
  lcow_import(zlib zlib.h NAMES z)
  lcow_import(isal isa-l/igzip_lib.h NAMES isal)
  lcow_import(zstd zstd.h NAMES zstd)
  lcow_import(archive archive.h NAMES archive)
  lcow_import(nettle nettle/sha2.h NAMES nettle)
  lcow_import(nghttp2 nghttp2/nghttp2.h NAMES nghttp2)
  lcow_import(protobufc protobuf-c/protobuf-c.h NAMES protobuf-c)
endif()

# The toolchain file searches programs on the host only
# (CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER), so this finds Debian's protoc-c in
# the win64 build too. Generated code includes <protobuf-c/protobuf-c.h>, which
# lcow::protobufc provides.
find_program(LCOW_PROTOC_C NAMES protoc-c protoc-gen-c
             DOC "protobuf-c code generator (Debian's protobuf-c-compiler)")
if(NOT LCOW_PROTOC_C)
  message(FATAL_ERROR "lcowsnap: protoc-c not found (package protobuf-c-compiler). "
                      "Run scripts/install-deps.sh (or `make deps`).")
endif()
