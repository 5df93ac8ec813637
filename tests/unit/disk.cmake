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
lcow_unit_test(NAME test_ext4 SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_ext4.c LIBS lcow_disk)
lcow_unit_test(NAME test_scratchdisk SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_scratchdisk.c
               ${CMAKE_CURRENT_LIST_DIR}/testlib.c LIBS lcow_disk)
if(WIN32)
  # Every win64 test runs under Wine here; the real virtdisk must be refused.
  set(LCOW_TEST_ENV "LCOW_UNDER_WINE=1")
endif()
lcow_unit_test(NAME test_vdisk SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_vdisk.c LIBS lcow_disk)
unset(LCOW_TEST_ENV)

# External validation of exported images (both builds; the point is win64,
# whose test exe cannot start Linux tools from inside Wine).
find_program(LCOW_DISK_QEMU_IMG qemu-img NO_CMAKE_FIND_ROOT_PATH)
find_program(LCOW_DISK_E2FSCK e2fsck PATHS /usr/sbin /sbin NO_CMAKE_FIND_ROOT_PATH)
find_program(LCOW_DISK_DUMPE2FS dumpe2fs PATHS /usr/sbin /sbin NO_CMAKE_FIND_ROOT_PATH)
if(LCOW_DISK_QEMU_IMG AND LCOW_DISK_E2FSCK AND LCOW_DISK_DUMPE2FS)
  foreach(exporter test_scratchdisk test_vhdx)
    set_tests_properties(${exporter} PROPERTIES FIXTURES_SETUP disk_export_${exporter})
    add_test(NAME ${exporter}_exported_images
             COMMAND sh ${PROJECT_SOURCE_DIR}/tests/disk/check-images.sh
                     ${LCOW_TEST_TMP_ROOT}/${exporter}/export ${LCOW_DISK_QEMU_IMG}
                     ${LCOW_DISK_E2FSCK} ${LCOW_DISK_DUMPE2FS})
    set_tests_properties(${exporter}_exported_images PROPERTIES
                         FIXTURES_REQUIRED disk_export_${exporter} LABELS "unit;disk" TIMEOUT 300)
  endforeach()
endif()

# core/disk/compact and ext4_view. A disk filled and emptied with debugfs
# and converted with qemu-img (tests/disk/compact-fixture.sh, on the build
# host) is compacted by the test exe of every build (Wine too), and the
# results are checked with qemu-img, e2fsck and debugfs afterwards
# (tests/disk/compact-check.sh). Without the tools those cases skip.
lcow_unit_test(NAME test_compact SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_compact.c LIBS lcow_disk)
find_program(LCOW_DISK_DEBUGFS debugfs PATHS /usr/sbin /sbin NO_CMAKE_FIND_ROOT_PATH)
find_program(LCOW_DISK_MKFS_EXT4 mkfs.ext4 PATHS /usr/sbin /sbin NO_CMAKE_FIND_ROOT_PATH)
if(LCOW_DISK_QEMU_IMG AND LCOW_DISK_E2FSCK AND LCOW_DISK_DEBUGFS AND LCOW_DISK_MKFS_EXT4)
  set(fixture ${LCOW_TEST_TMP_ROOT}/compact-fixture)
  if(WIN32)
    string(REPLACE "/" "\\" fixture_native "Z:${fixture}")
  else()
    set(fixture_native ${fixture})
  endif()
  add_test(NAME test_compact_fixture
           COMMAND sh ${PROJECT_SOURCE_DIR}/tests/disk/compact-fixture.sh ${fixture}
                   ${LCOW_DISK_QEMU_IMG} ${LCOW_DISK_DEBUGFS} ${LCOW_DISK_MKFS_EXT4})
  add_test(NAME test_compact_checked
           COMMAND sh ${PROJECT_SOURCE_DIR}/tests/disk/compact-check.sh ${fixture}
                   ${LCOW_DISK_QEMU_IMG} ${LCOW_DISK_E2FSCK} ${LCOW_DISK_DEBUGFS})
  set_tests_properties(test_compact_fixture PROPERTIES FIXTURES_SETUP compact_fixture
                       LABELS "unit;disk" TIMEOUT 300)
  set_tests_properties(test_compact PROPERTIES FIXTURES_REQUIRED compact_fixture
                       FIXTURES_SETUP compact_result)
  set_property(TEST test_compact APPEND PROPERTY ENVIRONMENT
               "LCOW_COMPACT_FIXTURE=${fixture_native}")
  set_tests_properties(test_compact_checked PROPERTIES
                       FIXTURES_REQUIRED "compact_fixture;compact_result" LABELS "unit;disk"
                       TIMEOUT 300)
endif()
