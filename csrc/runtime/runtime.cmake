# Native runtime (plan executor) sources, added to the _C target.
# ISA-neutral: no -m flags; hot loops call the dispatched kernels.
target_sources(_C PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/plan.cpp
  ${CMAKE_CURRENT_LIST_DIR}/pool.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ops/eltwise.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ops/shape.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ops/nn.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ops/cnn.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ops/minmax_avx512.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../bindings/runtime.cpp
)
# The one ISA-specific runtime TU: only it gets -mavx512f (dispatched at run time via may_use).
if(NOT MSVC)
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/ops/minmax_avx512.cpp PROPERTIES COMPILE_OPTIONS "-mavx512f")
else()
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/ops/minmax_avx512.cpp PROPERTIES COMPILE_OPTIONS "/arch:AVX512")
endif()
