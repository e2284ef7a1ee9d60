# SPDX-License-Identifier: BSD-3-Clause
# Builds and runs tests/consumer against SimSiam, in MODE find_package (after installing the
# build tree into a scratch prefix) or add_subdirectory. Run by ctest with cmake -P.
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE code)
  if(NOT code EQUAL 0)
    string(REPLACE ";" " " shown "${ARGN}")
    message(FATAL_ERROR "consumer test: '${shown}' failed (${code})")
  endif()
endfunction()

set(args -S "${SOURCE_DIR}/tests/consumer" -B "${WORK_DIR}/build" -G "${GENERATOR}"
    -DCMAKE_BUILD_TYPE=Release -DTorch_DIR=${Torch_DIR} -DSIMSIAM_CONSUME=${MODE} -DSIMSIAM_EXPECTED_VERSION=${VERSION})
if(MODE STREQUAL "find_package")
  run("${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${WORK_DIR}/prefix")
  foreach(f lib/cmake/SimSiam/SimSiamConfig.cmake lib/cmake/SimSiam/SimSiamConfigVersion.cmake
            lib/cmake/SimSiam/SimSiamTargets.cmake include/simsiam/simsiam.hpp)
    if(NOT EXISTS "${WORK_DIR}/prefix/${f}")
      message(FATAL_ERROR "consumer test: install did not lay out ${f}")
    endif()
  endforeach()
  list(APPEND args "-DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix")
else()
  list(APPEND args "-DSIMSIAM_SOURCE_DIR=${SOURCE_DIR}")
endif()
run("${CMAKE_COMMAND}" ${args})
run("${CMAKE_COMMAND}" --build "${WORK_DIR}/build")
run("${WORK_DIR}/build/consumer")
