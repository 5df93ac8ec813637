# VHDX reader fuzz target; seeds in corpus/vhdx are VHDX files (ours and
# qemu's) in the sparse-file input format of fuzz_vhdx_reader.c, produced by
# tests/disk/make-vhdx-seeds.py.
#
# The reader's sources are compiled into the target itself (not taken from
# lcow_disk) so that -fsanitize=fuzzer instruments them: the libraries are
# built without coverage instrumentation, and libFuzzer would otherwise only
# see the harness's own edges.
lcow_fuzz_target(NAME fuzz_vhdx_reader
                 SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_vhdx_reader.c
                         ${PROJECT_SOURCE_DIR}/core/disk/vhdx.c ${PROJECT_SOURCE_DIR}/core/disk/crc32c.c
                         ${PROJECT_SOURCE_DIR}/core/disk/blocksink_posix.c
                 CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/vhdx LIBS lcow_os)
