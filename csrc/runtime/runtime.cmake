# Native runtime (plan executor) sources, added to the _C target.
# ISA-neutral (no -m flags): hot loops call the dispatched kernels.
target_sources(_C PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/plan.cpp
  ${CMAKE_CURRENT_LIST_DIR}/fork_safe.cpp
  ${CMAKE_CURRENT_LIST_DIR}/pool.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ops/eltwise.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ops/shape.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ops/nn.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ops/cnn.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ops/decoder.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ops/index.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ops/int4.cpp
  ${CMAKE_CURRENT_LIST_DIR}/ops/depthwise.cpp
  ${CMAKE_CURRENT_LIST_DIR}/../bindings/runtime.cpp
)
