// A live stream for the tool's many quiet ends (the members of the groups workload, who
// only read and acknowledge): frames are read from the socket's readiness, every frame
// that one read brought is handled in one go, and what they call for (an acknowledgement)
// is written once after them. No coroutine, strand, Beast stream or allocation per frame:
// the tool must cost less per delivery than the node it measures (issue #12), and its
// Beast streams on coroutines cost about two thirds of the node's CPU per delivery.
//
// It speaks docs/PROTOCOL.md as written: the WebSocket upgrade to /v1/ws with the token
// in the Authorization header and one subprotocol offered, then RFC 6455 frames (the
// node's unmasked, ours masked), Protobuf or JSON by the frame's type.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "client.pb.h"
#include "client/client.hpp"

namespace petchat::bench {

class lean_stream : public std::enable_shared_from_this<lean_stream> {
 public:
  struct handlers {
    // Each frame read (the welcome too), in order.
    std::function<void(client::server_frame const&)> frame;
    // After the frames of one read: where a reader acknowledges what it got (`send`).
    std::function<void(lean_stream&)> read_done;
    // Once, when the stream ends: `why` is empty when close() ended it.
    std::function<void(std::string const& why)> ended;
  };

  // Connects and upgrades (docs/PROTOCOL.md, "Connecting"). Throws if the node refuses.
  static boost::asio::awaitable<std::shared_ptr<lean_stream>> open(sdk::endpoint where, std::string access_token,
                                                                   sdk::encoding frames);
  // Starts reading. The handlers run one at a time, on the executor's threads.
  void start(handlers h);
  // Queues `frame` in the stream's encoding; from inside a handler only.
  void send(client::client_frame const& frame);
  // Queues one cumulative ack of the newest event read, if it was not acknowledged yet;
  // whether it did. From inside a handler only (read_done: one ack per read).
  bool ack_read();
  // Ends the stream from any thread (the handlers see it end with an empty reason).
  void close();

  lean_stream(boost::asio::ip::tcp::socket socket, sdk::encoding frames, std::string already_read);

 private:
  void wait_readable();
  void wait_writable();
  void on_readable();
  void after_reading();
  void on_writable();
  void take_frames();
  void handle(int opcode, char const* data, std::size_t size);
  void frame_out(int opcode, std::string_view payload);
  bool flush();  // true when everything queued is written (false also when the stream ended)
  void end(std::string why);

  boost::asio::ip::tcp::socket socket_;
  sdk::encoding encoding_;
  handlers h_;
  std::vector<char> in_;  // bytes read: [begin_, end_) not taken yet
  std::size_t begin_ = 0, end_ = 0;
  int fragments_opcode_ = 0;  // of a message arriving in fragments (0: none)
  std::string fragments_;
  std::string out_;  // frames queued: [sent_, size) not written yet
  std::size_t sent_ = 0;
  std::string scratch_;  // a frame's payload being encoded
  client::server_frame frame_;
  std::uint64_t read_seq_ = 0;   // the newest event read
  std::uint64_t acked_seq_ = 0;  // the newest acknowledged
  std::uint32_t mask_seed_;
  std::atomic<bool> closing_{false};  // close() was called (seen by the handler its shutdown wakes)
  bool ended_ = false;
};

}  // namespace petchat::bench
