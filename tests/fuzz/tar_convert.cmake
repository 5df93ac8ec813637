# Tar -> ext4 conversion fuzz target (core/layer/tar, core/layer/convert,
# core/disk/ext4_writer). The sources are compiled into the target so that
# -fsanitize=fuzzer instruments them. Seeds in corpus/tar_convert: "option
# byte + tar" files (small golden and edge-case layers), made by
# tests/fuzz/make-tar-seeds.py.
lcow_fuzz_target(NAME fuzz_tar_convert
                 SOURCES ${CMAKE_CURRENT_LIST_DIR}/fuzz_tar_convert.c
                         ${PROJECT_SOURCE_DIR}/core/layer/tar.c
                         ${PROJECT_SOURCE_DIR}/core/layer/convert.c
                         ${PROJECT_SOURCE_DIR}/core/disk/ext4_writer.c
                         ${PROJECT_SOURCE_DIR}/core/disk/ext4_writer_tree.c
                         ${PROJECT_SOURCE_DIR}/core/disk/ext4_writer_layout.c
                         ${PROJECT_SOURCE_DIR}/core/disk/ext4_writer_xattr.c
                         ${PROJECT_SOURCE_DIR}/core/disk/ext4_writer_finish.c
                         ${PROJECT_SOURCE_DIR}/core/disk/go_sort.c
                 CORPUS ${CMAKE_CURRENT_LIST_DIR}/corpus/tar_convert LIBS lcow_os)
