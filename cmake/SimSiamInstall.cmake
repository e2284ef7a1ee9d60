# SPDX-License-Identifier: BSD-3-Clause
include(CMakePackageConfigHelpers)

set(SIMSIAM_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/SimSiam")
set(_simsiam_targets simsiam)
if(TARGET simsiam_data)
  list(APPEND _simsiam_targets simsiam_data)
endif()
if(TARGET simsiam_distributed)
  list(APPEND _simsiam_targets simsiam_distributed)
endif()

install(DIRECTORY "${PROJECT_SOURCE_DIR}/include/simsiam" DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(TARGETS ${_simsiam_targets} EXPORT SimSiamTargets)
install(EXPORT SimSiamTargets NAMESPACE SimSiam:: DESTINATION "${SIMSIAM_CMAKE_DIR}")

configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/SimSiamConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/SimSiamConfig.cmake" INSTALL_DESTINATION "${SIMSIAM_CMAKE_DIR}")
write_basic_package_version_file("${PROJECT_BINARY_DIR}/SimSiamConfigVersion.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion ARCH_INDEPENDENT)
install(FILES "${PROJECT_BINARY_DIR}/SimSiamConfig.cmake" "${PROJECT_BINARY_DIR}/SimSiamConfigVersion.cmake"
  "${PROJECT_SOURCE_DIR}/cmake/FindTurboJPEG.cmake"
  # The installed SimSiamConfig.cmake looks for Gloo's and NCCL's headers with its functions.
  "${PROJECT_SOURCE_DIR}/cmake/SimSiamDistributed.cmake" DESTINATION "${SIMSIAM_CMAKE_DIR}")
