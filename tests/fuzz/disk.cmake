# VHDX reader fuzz target; seeds in corpus/vhdx are VHDX files (ours and
# qemu's) in the sparse-file input format of fuzz_vhdx_reader.c, produced by
# tests/disk/make-vhdx-seeds.py.
if(TARGET lcow_disk)
  lcow_fuzz_target(NAME fuzz_vhdx_reader SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_vhdx_reader.c
                   CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/vhdx LIBS lcow_disk)
endif()
