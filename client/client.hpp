// petchat's C++ client: REST calls and a live-stream connection (binary Protobuf frames, or
// text frames in the JSON mapping), on Asio coroutines. The benchmark tool drives nodes
// with it; it is the reference for a native client of docs/PROTOCOL.md.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "client.pb.h"

namespace petchat::sdk {

using boost::asio::awaitable;

struct endpoint {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
};

struct http_reply {
  unsigned status = 0;
  std::string body;
};

// One HTTP/1.1 request on a fresh connection. Throws boost::system::system_error if the
// node cannot be reached.
awaitable<http_reply> http_call(endpoint where, std::string method, std::string target, std::string body,
                                std::string bearer = {});

struct session_tokens {
  std::string user_id;
  std::string device_id;
  std::string access_token;
};

// Registers `name` (ignoring "name_taken") and logs in a new device. Throws
// std::runtime_error with the node's answer on failure.
awaitable<session_tokens> register_and_login(endpoint where, std::string name, std::string password,
                                             std::string device);

// The live stream's two encodings (docs/PROTOCOL.md, "Connecting"): "petchat.v1.proto",
// binary Protobuf frames; "petchat.v1.json", text frames in Protobuf's JSON mapping.
enum class encoding { proto, json };

// A live-stream connection speaking one of the two encodings. One coroutine may read while
// another writes; never two writers or two readers at once.
class connection {
 public:
  // Connects, upgrades with the token in the Authorization header, offering the
  // subprotocol of `frames`, and waits for `welcome`. `bind_address` chooses the local
  // source address (to spread connections over 127.x.y.z). Throws on failure.
  static awaitable<std::unique_ptr<connection>> open(endpoint where, std::string access_token,
                                                     std::optional<std::string> bind_address = std::nullopt,
                                                     encoding frames = encoding::proto);
  // A plain WebSocket to `path` with no petchat handshake (for the bare-transport echo
  // baseline of the benchmarks): use write_raw / read_raw.
  static awaitable<std::unique_ptr<connection>> open_raw(endpoint where, std::string path);
  awaitable<void> write_raw(std::string const& bytes);
  awaitable<std::size_t> read_raw();
  ~connection();

  client::welcome const& welcome() const;
  // Writes `frame` in the connection's encoding.
  awaitable<void> write(client::client_frame const& frame);
  // The next frame, decoded by its WebSocket frame type (text as JSON, binary as
  // Protobuf); throws boost::system::system_error when the connection closes and
  // std::runtime_error when the frame cannot be decoded.
  awaitable<client::server_frame> read();
  void close();

 private:
  struct impl;
  explicit connection(std::unique_ptr<impl> i);
  std::unique_ptr<impl> impl_;
};

}  // namespace petchat::sdk
