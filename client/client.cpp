#include "client/client.hpp"

#include <netinet/in.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <stdexcept>
#include <string_view>

#include "client/detail/json_codec.hpp"

namespace petchat::sdk {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace json = boost::json;
using tcp = asio::ip::tcp;

awaitable<tcp::socket> connect_to(endpoint where, std::optional<std::string> bind_address) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket socket(ex);
  tcp::endpoint target(asio::ip::make_address(where.host), where.port);
  socket.open(target.protocol());
  if (bind_address) {
    // Let connect() pick the port for the (source, destination) pair instead of bind():
    // otherwise every bound socket uses up a port of the whole ephemeral range.
    int one = 1;
    ::setsockopt(socket.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    socket.bind(tcp::endpoint(asio::ip::make_address(*bind_address), 0));
  }
  co_await socket.async_connect(target, asio::use_awaitable);
  socket.set_option(tcp::no_delay(true));
  co_return socket;
}

}  // namespace

awaitable<http_reply> http_call(endpoint where, std::string method, std::string target, std::string body,
                                std::string bearer) {
  auto socket = co_await connect_to(where, std::nullopt);
  http::request<http::string_body> req{http::string_to_verb(method), target, 11};
  req.set(http::field::host, where.host);
  req.set(http::field::content_type, "application/json");
  if (!bearer.empty()) req.set(http::field::authorization, "Bearer " + bearer);
  req.body() = std::move(body);
  req.keep_alive(false);
  req.prepare_payload();
  co_await http::async_write(socket, req, asio::use_awaitable);
  beast::flat_buffer buffer;
  http::response<http::string_body> res;
  co_await http::async_read(socket, buffer, res, asio::use_awaitable);
  co_return http_reply{res.result_int(), std::move(res.body())};
}

awaitable<session_tokens> register_and_login(endpoint where, std::string name, std::string password,
                                             std::string device) {
  json::object reg{{"name", name}, {"password", password}};
  auto r = co_await http_call(where, "POST", "/v1/users", json::serialize(reg));
  if (r.status != 201 && r.status != 409) throw std::runtime_error("register " + name + ": " + r.body);
  json::object login{{"name", name}, {"password", password}, {"device_name", device}};
  auto l = co_await http_call(where, "POST", "/v1/sessions", json::serialize(login));
  if (l.status != 201) throw std::runtime_error("login " + name + ": " + l.body);
  auto v = json::parse(l.body).as_object();
  co_return session_tokens{std::string(v.at("user_id").as_string()), std::string(v.at("device_id").as_string()),
                           std::string(v.at("access_token").as_string())};
}

struct connection::impl {
  websocket::stream<tcp::socket> ws;
  beast::flat_buffer buffer;
  client::welcome welcome;
  encoding frames = encoding::proto;  // what write() sends; read() decodes by frame type
  std::string out;                    // the frame being written, reused so a write need not allocate
  explicit impl(tcp::socket s) : ws(std::move(s)) {}
};

connection::connection(std::unique_ptr<impl> i) : impl_(std::move(i)) {}
connection::~connection() = default;

awaitable<std::unique_ptr<connection>> connection::open(endpoint where, std::string access_token,
                                                        std::optional<std::string> bind_address, encoding frames) {
  auto socket = co_await connect_to(where, std::move(bind_address));
  auto i = std::make_unique<impl>(std::move(socket));
  i->frames = frames;
  char const* protocol = frames == encoding::json ? "petchat.v1.json" : "petchat.v1.proto";
  i->ws.set_option(websocket::stream_base::decorator([token = access_token, protocol](websocket::request_type& req) {
    req.set(http::field::sec_websocket_protocol, protocol);
    req.set(http::field::authorization, "Bearer " + token);
  }));
  i->ws.binary(frames == encoding::proto);
  co_await i->ws.async_handshake(where.host, "/v1/ws", asio::use_awaitable);
  std::unique_ptr<connection> c(new connection(std::move(i)));
  auto first = co_await c->read();
  if (!first.has_welcome()) throw std::runtime_error("expected welcome, got " + first.ShortDebugString());
  c->impl_->welcome = first.welcome();
  co_return c;
}

awaitable<std::unique_ptr<connection>> connection::open_raw(endpoint where, std::string path) {
  auto socket = co_await connect_to(where, std::nullopt);
  auto i = std::make_unique<impl>(std::move(socket));
  i->ws.binary(true);
  co_await i->ws.async_handshake(where.host, path, asio::use_awaitable);
  co_return std::unique_ptr<connection>(new connection(std::move(i)));
}

awaitable<void> connection::write_raw(std::string const& bytes) {
  co_await impl_->ws.async_write(asio::buffer(bytes), asio::use_awaitable);
}

awaitable<std::size_t> connection::read_raw() {
  impl_->buffer.clear();
  co_return co_await impl_->ws.async_read(impl_->buffer, asio::use_awaitable);
}

client::welcome const& connection::welcome() const {
  return impl_->welcome;
}

awaitable<void> connection::write(client::client_frame const& frame) {
  auto& out = impl_->out;
  out.clear();
  if (impl_->frames == encoding::json)
    detail::json_codec::append(out, frame);
  else if (!frame.SerializeToString(&out))
    throw std::runtime_error("client frame cannot be serialized");
  co_await impl_->ws.async_write(asio::buffer(out), asio::use_awaitable);
}

awaitable<client::server_frame> connection::read() {
  impl_->buffer.clear();
  co_await impl_->ws.async_read(impl_->buffer, asio::use_awaitable);
  auto data = impl_->buffer.data();
  client::server_frame f;
  // By frame type, as the node decodes client frames: the subprotocol the node chose
  // decides what it sends, and a node may choose otherwise than was offered.
  bool ok = impl_->ws.got_text()
                ? detail::json_codec::parse(std::string_view(static_cast<char const*>(data.data()), data.size()), f)
                : f.ParseFromArray(data.data(), static_cast<int>(data.size()));
  if (!ok) throw std::runtime_error("malformed server frame");
  co_return f;
}

void connection::close() {
  boost::system::error_code ignored;
  impl_->ws.next_layer().close(ignored);
}

}  // namespace petchat::sdk
