// Status: how C++ kernels report bad arguments without exceptions crossing
// OpenMP regions. Bindings turn a non-ok Status into a Python ValueError.
#pragma once
#include <string>
#include <utility>

namespace graphopt {

class Status {
 public:
  Status() = default;
  static Status ok() { return Status(); }
  static Status invalid(std::string msg) { return Status(std::move(msg)); }
  bool is_ok() const { return msg_.empty(); }
  explicit operator bool() const { return is_ok(); }
  const std::string& message() const { return msg_; }

 private:
  explicit Status(std::string msg) : msg_(std::move(msg)) {}
  std::string msg_;
};

}  // namespace graphopt
