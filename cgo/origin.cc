// origin.cc: where a loaded module's tensors came from in its file, so that
// from a shape-only pass (meta.cc) on, their pages can wait in the file
// until a call needs their bytes.
//
// A one-shot prune's peak memory was the model's tensors plus what the IR
// export's trace holds at once: executors for every method it runs, the
// traced graph, and their garbage (densenet121: 25 MB over its loaded size,
// against a 33 MB file). The trace reads no tensor value (its tensors are
// meta twins), so the bytes can wait in the file, which the page cache
// holds anyway: the pass drops the blocks' pages (madvise; the blocks stay
// allocated, so nothing else takes their addresses), runs, and hands its
// own garbage back. The bytes then go on waiting: the scoring reads a copy
// of each weight and lets it go (gpt_module_read), surgery writes only the
// kept part of a cut tensor into its block (gpt_module_prune), and every
// other call that may read the tensors reads them all back first
// (gpt::unpark). So the module's full size is never resident again after
// the load, and each byte is read back at most once more than before.
// Only bytes that still equal the file's go (compared byte for byte
// first), and every read of them must hash as those did, so a tensor
// changed since the load (fine-tuned, cut) is never touched and a file
// changed under the run is an error, never a silent swap of weights.
#include <c10/core/CPUAllocator.h>
#include <caffe2/serialize/read_adapter_interface.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <new>
#include <unordered_map>

#include "internal.h"

namespace {

// Blocks below a page free no page; the bookkeeping is not worth it.
constexpr size_t kMinBytes = 4096;
// How many bytes may wait in the file: room for the passes and the cut,
// not the whole model. What a trace holds at once above what it leaves was
// at most 14 MB over the 54 scripted architectures of the fixtures
// (densenet121; resnet50 4 MB, vgg11_bn's 531 MB none), and reading bytes
// back costs their page faults and a copy (resnet50, all 98 MB: 130 ms).
constexpr size_t kRoom = 32 << 20;
// The comparison and the hash go through the file in chunks of this size
// (a multiple of the hash's 32-byte step).
constexpr size_t kChunk = 1 << 20;

// pread_full reads n bytes at pos, retrying short reads and EINTR; returns
// the count read (less at the end of the file) or -1.
ssize_t pread_full(int fd, void *buf, size_t n, uint64_t pos) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, static_cast<char *>(buf) + done, n - done, static_cast<off_t>(pos + done));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return -1;
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(done);
}

// Hash is a 64-bit streaming hash over 8-byte words in four lanes (about
// memory speed); it guards against a file that changed, not an adversary.
class Hash {
 public:
  // add takes the bytes in order; every chunk but the last must be a
  // multiple of 32 bytes.
  void add(const void *p, size_t n) {
    const auto *b = static_cast<const unsigned char *>(p);
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
      uint64_t w[4];
      std::memcpy(w, b + i, 32);
      for (int l = 0; l < 4; l++) lane_[l] = (lane_[l] ^ w[l]) * kPrime;
    }
    for (; i < n; i++) lane_[0] = (lane_[0] ^ b[i]) * kPrime;
    len_ += n;
  }
  uint64_t sum() const {
    uint64_t h = len_;
    for (uint64_t l : lane_) h = (h ^ (l >> 29) ^ l) * kPrime;
    return h;
  }

 private:
  // An odd multiplier (2^64 over the golden ratio) spreads each word over
  // the lane's bits.
  static constexpr uint64_t kPrime = 0x9e3779b97f4a7c15ULL;
  uint64_t lane_[4] = {0xcbf29ce484222325ULL, 0x84222325cbf29ce4ULL, 0x9e3779b97f4a7c15ULL, 0xc2b2ae3d27d4eb4fULL};
  uint64_t len_ = 0;
};

// RecordingReader reads the archive as libtorch's own file adapter does,
// and notes where each read of a page or more landed: a tensor's bytes are
// read straight into its storage's block, so the block's address names its
// place in the file.
class RecordingReader final : public caffe2::serialize::ReadAdapterInterface {
 public:
  RecordingReader(int fd, size_t size, std::unordered_map<const void *, gpt::Origin::Place> *reads)
      : fd_(fd), size_(size), reads_(reads) {}
  size_t size() const override { return size_; }
  size_t read(uint64_t pos, void *buf, size_t n, const char *what) const override {
    if (pos >= size_) return 0;
    n = std::min<size_t>(n, size_ - pos);
    ssize_t r = pread_full(fd_, buf, n, pos);
    TORCH_CHECK(r >= 0, "reading ", what != nullptr ? what : "the archive", " failed: ", std::strerror(errno));
    if (static_cast<size_t>(r) >= kMinBytes) (*reads_)[buf] = {pos, static_cast<size_t>(r)};
    return static_cast<size_t>(r);
  }

 private:
  int fd_;
  size_t size_;
  std::unordered_map<const void *, gpt::Origin::Place> *reads_;
};

// same_as_file says whether the n bytes at p equal the file's at pos, and
// hashes them.
bool same_as_file(int fd, const void *p, const gpt::Origin::Place &at, std::vector<char> &buf, uint64_t *sum) {
  Hash h;
  const auto *mem = static_cast<const char *>(p);
  for (size_t off = 0; off < at.n; off += kChunk) {
    size_t k = std::min(kChunk, at.n - off);
    if (pread_full(fd, buf.data(), k, at.pos + off) != static_cast<ssize_t>(k)) return false;
    if (std::memcmp(buf.data(), mem + off, k) != 0) return false;
    h.add(mem + off, k);
  }
  *sum = h.sum();
  return true;
}

}  // namespace

namespace gpt {

torch::jit::Module load_module(const std::string &path, c10::optional<c10::Device> dev,
                               std::shared_ptr<Origin> *origin) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  struct stat st {};
  char magic[4] = {};
  // Anything but a zip archive on a regular file (a flatbuffer model, a
  // pipe, a file that cannot be opened) loads as before, with libtorch's
  // own errors.
  if (f.fd < 0 || ::fstat(f.fd, &st) != 0 || !S_ISREG(st.st_mode) || pread_full(f.fd, magic, 4, 0) != 4 ||
      std::memcmp(magic, "PK\x03\x04", 4) != 0)
    return torch::jit::load(path, dev);
  auto o = std::make_shared<Origin>();
  o->path = path;
  std::unordered_map<const void *, Origin::Place> reads;
  auto rai = std::make_shared<RecordingReader>(f.fd, static_cast<size_t>(st.st_size), &reads);
  torch::jit::Module m = torch::jit::load(rai, dev);
  // Keep the reads that are a live CPU storage's whole block.
  each_slot(m, [&](const auto &, size_t, const c10::IValue &v) {
    if (!v.isTensor() || !v.toTensor().defined() || !v.toTensor().device().is_cpu()) return;
    const c10::StorageImpl *s = v.toTensor().storage().unsafeGetStorageImpl();
    auto it = reads.find(s->data());
    if (it != reads.end() && it->second.n == s->nbytes()) o->places.insert(*it);
  });
  if (!o->places.empty()) *origin = std::move(o);
  return m;
}

Fd::~Fd() {
  if (fd >= 0) ::close(fd);
}

void Offload::drop(const std::vector<const c10::IValue *> &tensors) {
  if (!origin_ || origin_->places.empty()) return;
  // A storage's pages go only when the module's tensors are all that hold
  // it: no handle outside can read the block meanwhile.
  std::map<c10::StorageImpl *, std::map<c10::TensorImpl *, size_t>> holders;
  std::map<c10::StorageImpl *, c10::Storage> storages;
  for (const c10::IValue *v : tensors) {
    const at::Tensor &t = v->toTensor();
    if (!t.device().is_cpu() || t.is_sparse() || t.is_mkldnn()) continue;
    c10::StorageImpl *s = t.storage().unsafeGetStorageImpl();
    if (items_.count(s) != 0) continue;  // parked already
    holders[s][t.unsafeGetTensorImpl()]++;
    storages.emplace(s, t.storage());
  }
  // The largest blocks first, up to kRoom bytes in all.
  std::vector<std::pair<c10::StorageImpl *, Origin::Place>> cands;
  for (const auto &[s, impls] : holders) {
    auto place = origin_->places.find(s->data());
    if (place == origin_->places.end() || place->second.n != s->nbytes()) continue;
    // storages holds one more reference.
    bool alone = c10::raw::intrusive_ptr::use_count(s) == impls.size() + 1;
    for (const auto &[impl, uses] : impls) alone = alone && c10::raw::intrusive_ptr::use_count(impl) == uses;
    if (alone) cands.emplace_back(s, place->second);
  }
  std::sort(cands.begin(), cands.end(), [](const auto &a, const auto &b) { return a.second.n > b.second.n; });
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  std::vector<char> buf;
  for (const auto &[s, at] : cands) {
    if (bytes_ >= kRoom) break;
    // The whole pages inside the block; its ends share pages with other
    // blocks (and malloc's headers) and stay.
    auto *base = static_cast<char *>(s->data_ptr().get());
    uintptr_t lo = (reinterpret_cast<uintptr_t>(base) + page - 1) & ~(page - 1);
    uintptr_t hi = (reinterpret_cast<uintptr_t>(base) + s->nbytes()) & ~(page - 1);
    if (hi <= lo) continue;
    if (fd_.fd < 0) {
      fd_.fd = ::open(origin_->path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd_.fd < 0) return;
    }
    if (buf.empty()) buf.resize(kChunk);
    uint64_t sum = 0;
    if (!same_as_file(fd_.fd, base, at, buf, &sum)) continue;
    // The block stays allocated (the item holds its storage), so nothing
    // else can take its addresses; the kernel drops the pages, and reading
    // them before a restore would give zeros.
    if (::madvise(reinterpret_cast<void *>(lo), hi - lo, MADV_DONTNEED) != 0) continue;
    items_.emplace(s, Item{storages.at(s), at, sum, static_cast<size_t>(hi - lo)});
    bytes_ += hi - lo;
  }
}

bool Offload::fill(const Item &it, void *dst) const {
  if (pread_full(fd_.fd, dst, it.at.n, it.at.pos) != static_cast<ssize_t>(it.at.n)) return false;
  // Hashed in the chunks the comparison used, so the sums agree.
  Hash h;
  const auto *p = static_cast<const char *>(dst);
  for (size_t off = 0; off < it.at.n; off += kChunk) h.add(p + off, std::min(kChunk, it.at.n - off));
  return h.sum() == it.sum;
}

std::string Offload::changed(const Item &it) const {
  return "model file " + origin_->path + " changed while gopruner ran (its tensor bytes at offset " +
         std::to_string(it.at.pos) + " differ from those it loaded)";
}

void Offload::restore() {
  std::string failed;
  for (auto &[s, it] : items_) {
    char *base = static_cast<char *>(it.s.data_ptr().get());
    if (!fill(it, base)) {
      // Never half a block: zeros, and the error below ends the run.
      std::memset(base, 0, it.at.n);
      if (failed.empty()) failed = changed(it);
    }
  }
  items_.clear();
  bytes_ = 0;
  if (!failed.empty()) throw std::runtime_error(failed);
}

bool Offload::restore_one(const c10::StorageImpl *s) {
  auto it = items_.find(s);
  if (it == items_.end()) return false;
  Item item = std::move(it->second);
  items_.erase(it);
  bytes_ -= item.pages;
  char *base = static_cast<char *>(item.s.data_ptr().get());
  if (!fill(item, base)) {
    std::memset(base, 0, item.at.n);
    throw std::runtime_error(changed(item));
  }
  return true;
}

bool Offload::read(const c10::StorageImpl *s, void *dst) {
  auto it = items_.find(s);
  if (it == items_.end()) return false;
  if (!fill(it->second, dst)) throw std::runtime_error(changed(it->second));
  return true;
}

bool Offload::take(const c10::StorageImpl *s, Pages *bytes) {
  auto it = items_.find(s);
  if (it == items_.end()) return false;
  bytes->reset(it->second.at.n);
  Item item = std::move(it->second);
  items_.erase(it);
  bytes_ -= item.pages;
  if (!fill(item, bytes->data())) {
    std::memset(item.s.data_ptr().get(), 0, item.at.n);
    throw std::runtime_error(changed(item));
  }
  return true;
}

void Offload::forget() {
  items_.clear();
  bytes_ = 0;
}

Offload::~Offload() {
  try {
    restore();
  } catch (...) {
    // The blocks are whole (zeros where the file failed); only the calls
    // above report.
  }
}

void Pages::reset(size_t n) {
  if (p_ != nullptr) unmap(p_, n_);
  p_ = nullptr;
  n_ = 0;
  if (n == 0) return;
  // Populated in one call: the pages are all written next, and a fault
  // apiece cost more than the copy itself.
  void *p = ::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  p_ = static_cast<char *>(p);
  n_ = n;
}

char *Pages::release() {
  char *p = p_;
  p_ = nullptr;
  n_ = 0;
  return p;
}

void Pages::unmap(void *p, size_t n) {
  if (p != nullptr) ::munmap(p, n);
}

void unpark(gpt_module_s *h) {
  if (h == nullptr || !h->parked) return;
  std::unique_ptr<Offload> p = std::move(h->parked);
  p->restore();
}

}  // namespace gpt
