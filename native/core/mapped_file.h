// Read-only view of a whole file through mmap (MAP_PRIVATE, so a stray write from JS lands in a
// private copy-on-write page instead of faulting). Pages are read from disk on first touch:
// opening a 10 GB checkpoint costs nothing until tensors are read.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace lowbit {

class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  const uint8_t* data() const { return data_; }
  uint8_t* mutable_data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace lowbit
