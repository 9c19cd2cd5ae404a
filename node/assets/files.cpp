#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "base/format/format.hpp"
#include "node/assets/detail/files.hpp"

namespace petchat::assets::detail {
namespace {

[[noreturn]] void fail(std::string const& what, fs::path const& path) {
  int e = errno;
  throw file_error(what + " " + path.string() + ": " + std::strerror(e), e);
}

class fd_guard {
 public:
  explicit fd_guard(int fd) : fd_(fd) {}
  ~fd_guard() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

file_writer::file_writer(fs::path const& path, std::uint64_t keep, bool direct) : path_(path) {
  direct_ = direct && keep % direct_alignment == 0;
  fd_ = direct_ ? ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_DIRECT, 0600) : -1;
  if (fd_ < 0) {
    direct_ = false;  // EINVAL: the file system does not do it
    fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  }
  if (fd_ < 0) fail("open", path);
  // A constructor that throws runs no destructor: the file is closed here.
  auto give_up = [&](char const* what, int error) {
    ::close(fd_);
    fd_ = -1;
    errno = error;
    fail(what, path);
  };
  struct stat st {};
  if (::fstat(fd_, &st) != 0) give_up("stat", errno);
  if (static_cast<std::uint64_t>(st.st_size) < keep) give_up("shorter than its recorded length:", EIO);
  if (::ftruncate(fd_, static_cast<off_t>(keep)) != 0) give_up("truncate", errno);
  if (::lseek(fd_, static_cast<off_t>(keep), SEEK_SET) < 0) give_up("seek", errno);
  end_ = started_ = keep;
}

file_writer::~file_writer() {
  if (fd_ >= 0) ::close(fd_);
}

bool file_writer::write_direct(char const* data, std::size_t size) {
  if (!direct_) return false;
  if (reinterpret_cast<std::uintptr_t>(data) % direct_alignment != 0 || size % direct_alignment != 0 ||
      end_ % direct_alignment != 0) {
    stop_direct();
    return false;
  }
  while (size > 0) {
    auto n = ::write(fd_, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EINVAL) fail("write", path_);
    if (n > 0) {
      data += n;
      size -= static_cast<std::size_t>(n);
      end_ += static_cast<std::uint64_t>(n);
    }
    // The device wants another alignment (EINVAL), or a short write left the rest
    // unaligned: the rest through the page cache (write() finds direct_ off).
    if (n < 0 || size % direct_alignment != 0) {
      stop_direct();
      write(data, size);
      return true;
    }
  }
  started_ = end_;  // on the device already
  return true;
}

void file_writer::stop_direct() {
  direct_ = false;
  int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0 || ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) != 0) fail("fcntl", path_);
}

void file_writer::write(char const* data, std::size_t size) {
  if (write_direct(data, size)) return;
  while (size > 0) {
    auto n = ::write(fd_, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("write", path_);
    }
    data += n;
    size -= static_cast<std::size_t>(n);
    end_ += static_cast<std::uint64_t>(n);
  }
  if (end_ - started_ >= writeback_every) {
    // A hint: an error here is sync()'s to report.
    ::sync_file_range(fd_, static_cast<off_t>(started_), static_cast<off_t>(end_ - started_), SYNC_FILE_RANGE_WRITE);
    started_ = end_;
  }
}

void file_writer::sync() {
  if (::fdatasync(fd_) != 0) fail("fsync", path_);
}

file_store::file_store(fs::path root) : root_(std::move(root)) {
  for (auto const* sub : {"", "blobs", "uploads", "tmp", "quarantine"}) {
    auto dir = root_ / sub;
    fs::create_directories(dir);
    fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace);
  }
  for (auto const& e : fs::directory_iterator(root_ / "tmp")) fs::remove_all(e.path());
}

fs::path file_store::blob(std::string const& hash) const {
  auto hex = format::hex(hash);
  return root_ / "blobs" / hex.substr(0, 2) / hex;
}

fs::path file_store::upload(std::string const& id) const {
  return root_ / "uploads" / id;
}

fs::path file_store::new_tmp() const {
  unsigned char raw[12];
  randombytes_buf(raw, sizeof raw);
  return root_ / "tmp" / format::base64url(std::string_view(reinterpret_cast<char const*>(raw), sizeof raw));
}

fs::path file_store::quarantine(std::string const& hash) const {
  return root_ / "quarantine" / format::hex(hash);
}

std::string hash_file(fs::path const& path) {
  hasher h;
  feed_file(path, h);
  return h.finish();
}

std::uint64_t feed_file(fs::path const& path, hasher& h, std::uint64_t length) {
  fd_guard fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) fail("open", path);
  std::uint64_t fed = 0;
  std::vector<char> buf(1 << 20);
  while (length > 0) {
    auto want = static_cast<std::size_t>(std::min<std::uint64_t>(length, buf.size()));
    auto n = ::read(fd.get(), buf.data(), want);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("read", path);
    }
    if (n == 0) break;
    h.update(buf.data(), static_cast<std::size_t>(n));
    length -= static_cast<std::uint64_t>(n);
    fed += static_cast<std::uint64_t>(n);
  }
  return fed;
}

std::string read_head(fs::path const& path, std::size_t size) {
  fd_guard fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) fail("open", path);
  std::string out(size, '\0');
  std::size_t got = 0;
  while (got < size) {
    auto n = ::read(fd.get(), out.data() + got, size - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("read", path);
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
  }
  out.resize(got);
  return out;
}

void sync_dir(fs::path const& dir) {
  fd_guard fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) fail("open", dir);
  if (::fsync(fd.get()) != 0) fail("fsync", dir);
}

bool place(fs::path const& from, fs::path const& to, bool synced) {
  if (!synced) {
    fd_guard fd(::open(from.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0 || ::fdatasync(fd.get()) != 0) fail("fsync", from);
  }
  auto dir = to.parent_path();
  if (::mkdir(dir.c_str(), 0700) == 0)  // a new blobs/xx/: made by the system calls, so a
    sync_dir(dir.parent_path());        // full disk is a file_error (store_unavailable)
  else if (errno != EEXIST)
    fail("mkdir", dir);
  if (::link(from.c_str(), to.c_str()) != 0) {
    if (errno == EEXIST) return false;
    fail("link", to);
  }
  sync_dir(dir);
  return true;
}

void remove_file(fs::path const& path) {
  if (::unlink(path.c_str()) != 0) {
    if (errno == ENOENT) return;
    fail("unlink", path);
  }
  sync_dir(path.parent_path());
}

std::string from_hex(std::string_view printed) {
  auto raw = printed.size() == 2 * hash_bytes ? format::from_hex(printed) : std::nullopt;
  return raw ? *raw : std::string();
}

}  // namespace petchat::assets::detail
