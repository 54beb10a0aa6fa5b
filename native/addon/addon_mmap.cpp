// mapFile(path) -> {size, view(offset, length) -> ArrayBuffer, close()}.
// Views are external ArrayBuffers over the mapping (zero copy); each holds a reference to the
// mapping, so close() only drops the handle's own reference. Runtimes that forbid external
// buffers (e.g. Electron's V8 sandbox) get a copy instead.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "addon/task.h"
#include "core/mapped_file.h"

namespace lowbit {

struct MapHolder {
  std::shared_ptr<MappedFile> file;
};

static Napi::Value MapFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  auto* holder = new MapHolder();
  try {
    holder->file = MappedFile::open(path);
  } catch (const Error& e) {
    delete holder;
    throw Napi::Error::New(env, e.what());
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("size", (double)holder->file->size());
  o.Set("view", Napi::Function::New(env, [holder](const Napi::CallbackInfo& ci) -> Napi::Value {
          Napi::Env e = ci.Env();
          if (!holder->file) throw_js(e, "LOWBIT_DISPOSED", "mapping is closed");
          double off = ci[0].As<Napi::Number>().DoubleValue(), len = ci[1].As<Napi::Number>().DoubleValue();
          const double size = (double)holder->file->size();
          if (off < 0 || len < 0 || off + len > size)
            throw_js(e, "LOWBIT_BAD_FORMAT",
                     holder->file->path() + ": range [" + std::to_string((size_t)off) + ", " + std::to_string((size_t)(off + len)) +
                         ") is outside the file (" + std::to_string((size_t)size) + " bytes)");
          if (len == 0) return Napi::ArrayBuffer::New(e, 0);
          uint8_t* p = holder->file->mutable_data() + (size_t)off;
          auto* keep = new std::shared_ptr<MappedFile>(holder->file);
          try {
            return Napi::ArrayBuffer::New(
                e, p, (size_t)len, [](Napi::Env, void*, std::shared_ptr<MappedFile>* k) { delete k; }, keep);
          } catch (const Napi::Error&) {
            delete keep;  // external buffers not allowed here: copy
            Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(e, (size_t)len);
            std::memcpy(ab.Data(), p, (size_t)len);
            return ab;
          }
        }));
  // release(offset, length): drop the pages of a range from this process's resident set (they are
  // read again from the file if touched later). Keeps RSS small when a checkpoint is streamed.
  o.Set("release", Napi::Function::New(env, [holder](const Napi::CallbackInfo& ci) {
          if (holder->file) {
            const size_t page = (size_t)sysconf(_SC_PAGESIZE);
            size_t off = (size_t)ci[0].As<Napi::Number>().DoubleValue(), len = (size_t)ci[1].As<Napi::Number>().DoubleValue();
            size_t b = (off + page - 1) / page * page, e = std::min(holder->file->size(), off + len) / page * page;
            if (e > b) madvise(holder->file->mutable_data() + b, e - b, MADV_DONTNEED);
          }
          return ci.Env().Undefined();
        }));
  o.Set("close", Napi::Function::New(env, [holder](const Napi::CallbackInfo& ci) {
          holder->file.reset();
          return ci.Env().Undefined();
        }));
  o.AddFinalizer([](Napi::Env, MapHolder* h) { delete h; }, holder);
  return o;
}

void register_mmap(Napi::Env env, Napi::Object exports) { exports.Set("mapFile", Napi::Function::New(env, MapFile, "mapFile")); }

}  // namespace lowbit
