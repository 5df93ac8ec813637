# Scratch disk images: crc32c, VHDX, ext4, block sinks, virtdisk backend,
# scratchdisk. External checkers (qemu-img, e2fsck, dumpe2fs, mkfs.ext4) are
# passed to native runs by lcow_unit_test; under Wine the tests use our own
# reader, and tests/disk/check-images.sh validates what the Windows build
# wrote (FIXTURES_REQUIRED on the exporting test).
if(NOT TARGET lcow_disk)
  return()
endif()

lcow_unit_test(NAME test_crc32c SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_crc32c.c LIBS lcow_disk)
lcow_unit_test(NAME test_vhdx SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_vhdx.c LIBS lcow_disk)
