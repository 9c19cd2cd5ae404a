// The assets workload (docs/BENCHMARKS.md, "Assets"): on a fresh node, in one run,
//  1. the disk's own sequential write with fsync and its read, of a file as large as the
//     upload (what `dd conv=fsync` measures), in the node's data directory;
//  2. one upload of that size in one request, and its download: throughput as a ratio of
//     the disk's, and how far the node's resident memory grows during each;
//  3. many 1 MiB uploads at once: whether all succeed, and the node's peak memory;
//  4. thumbnails: distinct JPEGs of 12 megapixels uploaded one by one, the node's CPU
//     time per image.
// Uploads are plain HTTP/1.1 over loopback, streamed from a buffer: the tool never holds
// a file whole either.
#include <fcntl.h>
#include <unistd.h>
#include <vips/vips.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <random>
#include <thread>

#include "bench/process.hpp"
#include "bench/workload.hpp"

namespace petchat::bench {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using clock_type = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

double seconds_since(clock_type::time_point t) {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

// The node's peak resident memory while `fn` runs, sampled every 20 ms.
template <typename F>
std::uint64_t peak_rss_during(pid_t pid, F&& fn) {
  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> peak{resident_bytes(pid)};
  std::thread sampler([&] {
    while (!done) {
      auto now = resident_bytes(pid);
      if (now > peak) peak = now;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  fn();
  done = true;
  sampler.join();
  return peak;
}

struct disk_speed {
  double write_s = 0, read_s = 0;
};

// What dd if=... of=file bs=1M conv=fsync, and dd if=file of=/dev/null bs=1M, measure.
disk_speed measure_disk(std::filesystem::path const& file, std::uint64_t size, std::vector<char> const& block) {
  disk_speed d;
  int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) throw std::runtime_error("cannot write " + file.string());
  auto t = clock_type::now();
  for (std::uint64_t done = 0; done < size;) {
    auto n = ::write(fd, block.data(), std::min<std::uint64_t>(block.size(), size - done));
    if (n <= 0) throw std::runtime_error("disk write failed");
    done += static_cast<std::uint64_t>(n);
  }
  ::fsync(fd);
  d.write_s = seconds_since(t);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // the read comes from the disk, as far as it can
  ::close(fd);
  std::vector<char> buf(1 << 20);
  fd = ::open(file.c_str(), O_RDONLY);
  t = clock_type::now();
  while (::read(fd, buf.data(), buf.size()) > 0) {
  }
  d.read_s = seconds_since(t);
  ::close(fd);
  std::filesystem::remove(file);
  return d;
}

// The transport's ceiling: `size` bytes over one loopback TCP connection between two
// threads of this tool, plain blocking send and recv; seconds.
double loopback_seconds(std::uint64_t size, std::vector<char> const& block) {
  asio::io_context io;
  tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  tcp::socket out(io), in(io);
  std::thread connector([&] { out.connect(acceptor.local_endpoint()); });
  acceptor.accept(in);
  connector.join();
  auto t = clock_type::now();
  std::thread sender([&] {
    for (std::uint64_t sent = 0; sent < size;)
      sent += asio::write(out, asio::buffer(block.data(), std::min<std::uint64_t>(block.size(), size - sent)));
    out.shutdown(tcp::socket::shutdown_send);
  });
  std::vector<char> sink(4 << 20);
  boost::system::error_code ec;
  while (!ec) in.read_some(asio::buffer(sink), ec);
  sender.join();
  return seconds_since(t);
}

struct http_answer {
  unsigned status = 0;
  std::string body;
  std::uint64_t body_bytes = 0;
};

// One request on a fresh connection: the header, then `length` bytes from `block` over and
// over (stamped with `stamp` in their first 8 bytes, so that uploads differ), then the answer
// read to its end (its body kept only up to 64 KiB).
asio::awaitable<http_answer> exchange(sdk::endpoint where, std::string head, std::uint64_t length,
                                      std::vector<char> const& block, std::uint64_t stamp) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket socket(ex);
  co_await socket.async_connect({asio::ip::make_address(where.host), where.port}, asio::use_awaitable);
  co_await asio::async_write(socket, asio::buffer(head), asio::use_awaitable);
  std::vector<char> first(block.begin(), block.begin() + static_cast<long>(std::min<std::size_t>(block.size(), 8)));
  for (std::uint64_t sent = 0; sent < length;) {
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(block.size(), length - sent));
    if (sent == 0 && n >= 8 && stamp != 0) {
      std::vector<char> stamped(block.begin(), block.begin() + static_cast<long>(n));
      std::memcpy(stamped.data(), &stamp, 8);
      co_await asio::async_write(socket, asio::buffer(stamped), asio::use_awaitable);
    } else {
      co_await asio::async_write(socket, asio::buffer(block.data(), n), asio::use_awaitable);
    }
    sent += n;
  }
  std::string in;
  auto header_end = co_await asio::async_read_until(socket, asio::dynamic_buffer(in), "\r\n\r\n", asio::use_awaitable);
  http_answer a;
  a.status = static_cast<unsigned>(std::stoul(in.substr(9, 3)));
  std::uint64_t content_length = 0;
  auto cl = in.find("Content-Length: ");
  if (cl != std::string::npos && cl < header_end) content_length = std::stoull(in.substr(cl + 16));
  std::uint64_t have = in.size() - header_end;
  a.body = in.substr(header_end);
  std::vector<char> sink(4 << 20);
  while (have < content_length) {
    // A large body (a download) is read with blocking reads, as a simple client would:
    // what is measured is the node, not this tool's event loop.
    boost::system::error_code ec;
    std::size_t n = content_length - have > (1u << 20) ? socket.read_some(asio::buffer(sink), ec) : 0;
    if (n == 0 && !ec) std::tie(ec, n) = co_await socket.async_read_some(asio::buffer(sink), use_tuple);
    if (ec) break;
    if (a.body.size() < 65536) a.body.append(sink.data(), std::min<std::size_t>(n, 65536));
    have += n;
  }
  a.body_bytes = have;
  co_return a;
}

// A download as a plain client does it (curl, a browser): one blocking socket, large reads.
http_answer plain_download(sdk::endpoint where, std::string const& target, std::string const& token) {
  asio::io_context io;
  tcp::socket socket(io);
  socket.connect({asio::ip::make_address(where.host), where.port});
  std::string head =
      "GET " + target + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token + "\r\nConnection: close\r\n\r\n";
  asio::write(socket, asio::buffer(head));
  std::string in;
  auto header_end = asio::read_until(socket, asio::dynamic_buffer(in), "\r\n\r\n");
  http_answer a;
  a.status = static_cast<unsigned>(std::stoul(in.substr(9, 3)));
  a.body_bytes = in.size() - header_end;
  std::vector<char> sink(4 << 20);
  boost::system::error_code ec;
  while (!ec) a.body_bytes += socket.read_some(asio::buffer(sink), ec);
  return a;
}

std::string upload_head(sdk::endpoint where, std::string const& token, std::uint64_t length) {
  return "POST /v1/assets?name=bench.bin HTTP/1.1\r\nHost: " + where.host + "\r\nAuthorization: Bearer " + token +
         "\r\nContent-Length: " + std::to_string(length) + "\r\nConnection: close\r\n\r\n";
}

// A distinct 12-megapixel JPEG (4000 x 3000 of noise, seeded by `n`).
std::string jpeg_12mp(int n) {
  VipsImage* noise = nullptr;
  void* data = nullptr;
  std::size_t size = 0;
  if (vips_gaussnoise(&noise, 4000, 3000, "mean", 128.0 + n, "sigma", 30.0, nullptr) != 0 ||
      vips_jpegsave_buffer(noise, &data, &size, "Q", 85, nullptr) != 0)
    throw std::runtime_error("libvips could not make a test JPEG");
  std::string out(static_cast<char const*>(data), size);
  g_free(data);
  g_object_unref(noise);
  return out;
}

// One of many uploads at once; the last to end wakes the run.
asio::awaitable<void> one_of_many(sdk::endpoint where, std::string head, std::vector<char> const* block,
                                  std::uint64_t stamp, std::atomic<int>* ok, std::atomic<int>* left,
                                  asio::steady_timer* all_done) {
  try {
    auto a = co_await exchange(where, std::move(head), 1 << 20, *block, stamp);
    if (a.status == 201) ++*ok;
  } catch (std::exception const&) {
  }
  if (--*left == 0) asio::post(all_done->get_executor(), [all_done] { all_done->cancel(); });
}

}  // namespace

int assets_workload(options const& o, std::uint64_t size_mib, int concurrent, int images) {
  if (VIPS_INIT("petchat-bench") != 0) throw std::runtime_error("libvips did not start");
  auto node = start_node(o);
  sdk::endpoint where = node.endpoint();
  std::uint64_t size = size_mib << 20;
  std::vector<char> block(1 << 20);
  std::mt19937_64 rng(42);
  for (auto& c : block) c = static_cast<char>(rng());
  json::object out{{"workload", "assets"}, {"size_bytes", size}};

  auto disk = measure_disk(node.dir / "data" / "disk-probe", size, block);
  auto wire_s = loopback_seconds(size, block);
  sdk::session_tokens who;
  std::string id;
  run(o, [&]() -> asio::awaitable<void> {
    who = co_await sdk::register_and_login(where, "bench", "bench-password", "bench");
  }());

  // One large upload, then its download (after dropping it from the page cache).
  auto rss0 = resident_bytes(node.process.pid);
  double up_s = 0, down_s = 0;
  http_answer up, down;
  auto up_peak = peak_rss_during(node.process.pid, [&] {
    auto t = clock_type::now();
    run(o, [&]() -> asio::awaitable<void> {
      up = co_await exchange(where, upload_head(where, who.access_token, size), size, block, 1);
    }());
    up_s = seconds_since(t);
  });
  if (up.status != 201) throw std::runtime_error("the large upload failed: " + up.body);
  id = json::parse(up.body).as_object().at("id").as_string().c_str();
  auto blob = node.dir / "data" / "assets" / "blobs" / id.substr(0, 2) / id;
  if (int fd = ::open(blob.c_str(), O_RDONLY); fd >= 0) {
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
  auto rss1 = resident_bytes(node.process.pid);
  auto down_peak = peak_rss_during(node.process.pid, [&] {
    auto t = clock_type::now();
    down = plain_download(where, "/v1/assets/" + id, who.access_token);
    down_s = seconds_since(t);
  });
  if (down.status != 200 || down.body_bytes != size) throw std::runtime_error("the download failed");
  double mib = static_cast<double>(size) / (1 << 20);
  std::printf("assets: %llu MiB in one request\n", static_cast<unsigned long long>(size_mib));
  std::printf("  disk write+fsync   %8.1f MiB/s      disk read %8.1f MiB/s\n", mib / disk.write_s, mib / disk.read_s);
  std::printf("  loopback TCP       %8.1f MiB/s      (one connection, plain send/recv: the transport's ceiling)\n",
              mib / wire_s);
  std::printf("  upload             %8.1f MiB/s  (%.2fx the disk's write)  RSS +%.1f MiB\n", mib / up_s,
              disk.write_s / up_s, (static_cast<double>(up_peak) - static_cast<double>(rss0)) / (1 << 20));
  std::printf("  download           %8.1f MiB/s  (%.2fx the disk's read)   RSS +%.1f MiB\n", mib / down_s,
              disk.read_s / down_s, (static_cast<double>(down_peak) - static_cast<double>(rss1)) / (1 << 20));
  out["disk_write_mib_s"] = mib / disk.write_s;
  out["disk_read_mib_s"] = mib / disk.read_s;
  out["loopback_mib_s"] = mib / wire_s;
  out["upload_mib_s"] = mib / up_s;
  out["download_mib_s"] = mib / down_s;
  out["upload_rss_growth_bytes"] = up_peak > rss0 ? up_peak - rss0 : 0;
  out["download_rss_growth_bytes"] = down_peak > rss1 ? down_peak - rss1 : 0;

  // Many 1 MiB uploads at once.
  std::atomic<int> ok{0};
  auto rss2 = resident_bytes(node.process.pid);
  double many_s = 0;
  auto many_peak = peak_rss_during(node.process.pid, [&] {
    auto t = clock_type::now();
    run(o, [&]() -> asio::awaitable<void> {
      auto ex = co_await asio::this_coro::executor;
      std::atomic<int> left{concurrent};
      asio::steady_timer all_done(ex, clock_type::time_point::max());
      for (int i = 0; i < concurrent; ++i)
        asio::co_spawn(asio::make_strand(ex),
                       one_of_many(where, upload_head(where, who.access_token, 1 << 20), &block,
                                   static_cast<std::uint64_t>(1000 + i), &ok, &left, &all_done),
                       asio::detached);
      co_await all_done.async_wait(use_tuple);
    }());
    many_s = seconds_since(t);
  });
  std::printf("  %d x 1 MiB at once  %d succeeded in %.2f s; node RSS %.1f -> peak %.1f MiB\n", concurrent, ok.load(),
              many_s, static_cast<double>(rss2) / (1 << 20), static_cast<double>(many_peak) / (1 << 20));
  out["concurrent"] = concurrent;
  out["concurrent_ok"] = ok.load();
  out["concurrent_s"] = many_s;
  out["concurrent_peak_rss_bytes"] = many_peak;

  // Thumbnails of 12-megapixel JPEGs.
  std::vector<std::uint64_t> cpu;
  for (int i = 0; i < images; ++i) {
    auto jpeg = jpeg_12mp(i);
    std::vector<char> bytes(jpeg.begin(), jpeg.end());
    auto before = cpu_micros(node.process.pid);
    http_answer a;
    run(o, [&]() -> asio::awaitable<void> {
      a = co_await exchange(where, upload_head(where, who.access_token, bytes.size()), bytes.size(), bytes,
                            0);  // each image differs already
    }());
    cpu.push_back(cpu_micros(node.process.pid) - before);
    if (a.status != 201 || a.body.find("thumbnail_id") == std::string::npos)
      throw std::runtime_error("a JPEG got no thumbnail: " + a.body);
  }
  std::sort(cpu.begin(), cpu.end());
  double median_ms = cpu.empty() ? 0 : static_cast<double>(cpu[cpu.size() / 2]) / 1000;
  std::printf("  12 MP JPEG upload with its thumbnail: node CPU median %.1f ms per image (n=%d)\n", median_ms, images);
  out["thumbnail_cpu_ms_median"] = median_ms;
  if (o.as_json) std::printf("%s\n", json::serialize(out).c_str());
  remove_node(node);
  vips_shutdown();
  return ok.load() == concurrent ? 0 : 1;
}

}  // namespace petchat::bench
