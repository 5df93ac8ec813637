# Cross-compiling toolchain: Windows x64 with mingw-w64 (Debian's gcc-mingw-w64).
#
# Thread model: the -posix compilers, never the default -win32 ones. LevelDB's
# port layer uses std::mutex / std::condition_variable, which libstdc++ only
# provides with the posix thread model (the win32 g++ 12 fails in
# port/port_stdcxx.h), and a posix-built libleveldb.a then needs winpthread,
# so the whole project is compiled and linked with the -posix drivers too.
#
# LCOW_DEPS_PREFIX (default build/deps/win64, filled by scripts/install-deps.sh)
# holds the cross-built LevelDB, msgpack-c, cmocka and PCRE2; it is put on
# CMAKE_FIND_ROOT_PATH because CMAKE_PREFIX_PATH alone is re-rooted away.
#
# CMAKE_CROSSCOMPILING_EMULATOR runs test executables with Wine, in the
# build's own headless prefix (LCOW_WINEPREFIX, default build/wine-prefix).
# The environment is part of the emulator command, so every add_test() of an
# executable target gets it without further work.

set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)

set(LCOW_MINGW_TRIPLE x86_64-w64-mingw32)
set(CMAKE_C_COMPILER ${LCOW_MINGW_TRIPLE}-gcc-posix)
set(CMAKE_CXX_COMPILER ${LCOW_MINGW_TRIPLE}-g++-posix)
set(CMAKE_RC_COMPILER ${LCOW_MINGW_TRIPLE}-windres)
set(CMAKE_MC_COMPILER ${LCOW_MINGW_TRIPLE}-windmc)
set(LCOW_WINDMC ${LCOW_MINGW_TRIPLE}-windmc)

get_filename_component(_lcow_source_dir "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
if(NOT LCOW_DEPS_PREFIX)
  if(DEFINED ENV{LCOW_DEPS_PREFIX})
    set(LCOW_DEPS_PREFIX "$ENV{LCOW_DEPS_PREFIX}")
  else()
    set(LCOW_DEPS_PREFIX "${_lcow_source_dir}/build/deps/win64")
  endif()
endif()
if(NOT LCOW_WINEPREFIX)
  set(LCOW_WINEPREFIX "${_lcow_source_dir}/build/wine-prefix")
endif()
# try_compile() re-reads this file in a fresh project: hand the values on.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES LCOW_DEPS_PREFIX LCOW_WINEPREFIX)

set(CMAKE_FIND_ROOT_PATH /usr/${LCOW_MINGW_TRIPLE} ${LCOW_DEPS_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# wine is a shell script that picks /usr/lib/wine/wine64 (there is no wine32).
# WINEDLLOVERRIDES uses ',' (same meaning as ';') so it survives as a CMake list.
find_program(LCOW_WINE wine)
if(NOT LCOW_WINE)
  set(LCOW_WINE wine)
endif()
set(CMAKE_CROSSCOMPILING_EMULATOR
    env -u DISPLAY WINEPREFIX=${LCOW_WINEPREFIX} WINEDEBUG=-all
    WINEDLLOVERRIDES=mscoree,mshtml= ${LCOW_WINE})
