# The compact ext4 writer of layer import (core/disk/ext4_writer): natively
# e2fsck -fn checks what it writes (LCOW_E2FSCK, passed by lcow_unit_test).
lcow_unit_test(NAME test_ext4_writer SOURCES ${CMAKE_CURRENT_LIST_DIR}/test_ext4_writer.c
               LIBS lcow_disk)
