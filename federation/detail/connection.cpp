#include "federation/detail/connection.hpp"

#include <algorithm>
#include <vector>

namespace petchat::federation::detail {

using namespace std::chrono_literals;

std::string nats_error(natsStatus s, jsErrCode jerr) {
  std::string out = natsStatus_GetText(s);
  if (jerr != 0) out += " (JetStream error " + std::to_string(static_cast<int>(jerr)) + ")";
  if (char const* last = nats_GetLastError(nullptr); last && *last) out += ": " + std::string(last);
  return out;
}

namespace {

std::string connection_error(natsConnection* nc) {
  char const* text = nullptr;
  if (nc && natsConnection_GetLastError(nc, &text) != NATS_OK && text) return text;
  return {};
}

}  // namespace

nats_connection::nats_connection(link_state& state) : s_(state) {}

bool nats_connection::set_options() {
  auto const& opt = s_.opt;
  natsOptions_Create(&nopts_);
  std::vector<char const*> urls;
  for (auto const& u : opt.nats_urls) urls.push_back(u.c_str());
  natsOptions_SetServers(nopts_, urls.data(), static_cast<int>(urls.size()));
  natsOptions_SetName(nopts_, ("petchat-node " + s_.dir.self()).c_str());
  // Answers to this region's requests (asset pieces, JetStream's API) come to inboxes under
  // _INBOX.<region>: holders answer an asset request only there, and NATS permissions can
  // keep each region to its own (docs/FEDERATION.md, "Security of the NATS connection").
  natsOptions_SetCustomInboxPrefix(nopts_, (std::string(inbox_root) + s_.dir.self()).c_str());
  // A publish round writes its few bundles and then waits for their acknowledgements: the
  // bytes go out in the publishing call, not when NATS.c's flusher thread gets to them
  // (measured at 2,000 messages/s: 0.9 ms less from send to recipient, the same CPU).
  natsOptions_SetSendAsap(nopts_, true);
  // Writes to a server that stopped reading (hung, or a link dropping packets) fail after a
  // minute (or publish_timeout_ms, if longer), and the connection is taken as lost, instead
  // of blocking for as long as TCP takes to give up. Generous: a bundle of 512 KiB must get
  // through a slow link within it (about 70 kbit/s).
  natsOptions_SetWriteDeadline(nopts_, std::max<int64_t>(60000, opt.publish_timeout_ms));
  natsOptions_SetMaxReconnect(nopts_, -1);
  natsOptions_SetReconnectWait(nopts_, opt.reconnect_wait_ms);
  natsOptions_SetTimeout(nopts_, opt.publish_timeout_ms);
  natsOptions_SetReconnectedCB(nopts_, &on_connected, this);
  natsOptions_SetDisconnectedCB(nopts_, &on_disconnected, this);
  natsOptions_SetErrorHandler(nopts_, &on_error, this);
  natsOptions_SetClosedCB(nopts_, &on_closed, this);
  natsStatus s = NATS_OK;
  if (!opt.credentials_file.empty())
    s = natsOptions_SetUserCredentialsFromFiles(nopts_, opt.credentials_file.c_str(), nullptr);
  if (s == NATS_OK && !opt.nkey_seed_file.empty())
    s = natsOptions_SetNKeyFromSeed(nopts_, opt.nkey.c_str(), opt.nkey_seed_file.c_str());
  if (s == NATS_OK && !opt.user.empty()) s = natsOptions_SetUserInfo(nopts_, opt.user.c_str(), opt.password.c_str());
  bool tls_urls = std::all_of(opt.nats_urls.begin(), opt.nats_urls.end(),
                              [](std::string const& u) { return u.starts_with("tls://"); });
  if (!opt.password.empty() && opt.tls_ca_file.empty() && opt.tls_cert_file.empty() && !tls_urls)
    s_.log->warn(
        "federation: NATS user and password are set without TLS (no federation.tls_ca_file, nats:// URLs): the "
        "password crosses the network in the clear; use TLS, or nkeys or credentials");
  if (s == NATS_OK && (!opt.tls_ca_file.empty() || !opt.tls_cert_file.empty())) {
    s = natsOptions_SetSecure(nopts_, true);
    if (s == NATS_OK && !opt.tls_ca_file.empty())
      s = natsOptions_LoadCATrustedCertificates(nopts_, opt.tls_ca_file.c_str());
    if (s == NATS_OK && !opt.tls_cert_file.empty())
      s = natsOptions_LoadCertificatesChain(nopts_, opt.tls_cert_file.c_str(), opt.tls_key_file.c_str());
  }
  // Without it, NATS.c (as Debian builds it) checks each server's certificate against the
  // host in its URL; with it, every server's against this one name.
  if (s == NATS_OK && !opt.tls_server_name.empty())
    s = natsOptions_SetExpectedHostname(nopts_, opt.tls_server_name.c_str());
  if (s != NATS_OK) {
    s_.set_error("NATS options: " + nats_error(s));
    return false;
  }
  return true;
}

bool nats_connection::open() {
  if (!set_options()) return false;
  // One plain attempt first, which says why it failed (refused, authorization, TLS...);
  // then, if it did, one that keeps retrying in the background.
  natsStatus s = natsConnection_Connect(&nc_, nopts_);
  if (s == NATS_OK) {
    s_.connected = true;
  } else {
    s_.set_error("cannot connect to NATS: " + nats_error(s) + "; retrying in the background");
    nc_ = nullptr;
    natsOptions_SetRetryOnFailedConnect(nopts_, true, &on_connected, this);
    s = natsConnection_Connect(&nc_, nopts_);
    if (s == NATS_OK) {
      s_.connected = true;
    } else if (s != NATS_NOT_YET_CONNECTED) {
      s_.set_error("cannot connect to NATS: " + nats_error(s));
      return false;
    }
  }
  live_nc_ = nc_;
  {
    std::lock_guard lock(closed_mutex_);
    current_ = nc_;
    // Closed for good before it was known as the one in use: as if said now.
    if (std::ranges::find(closed_, nc_) != closed_.end()) s_.closed = true;
  }
  jsOptions jo;
  jsOptions_Init(&jo);
  if (!s_.opt.jetstream_domain.empty()) jo.Domain = s_.opt.jetstream_domain.c_str();
  jo.Wait = s_.opt.publish_timeout_ms;
  jo.PublishAsync.ErrHandler = &on_publish_error;
  jo.PublishAsync.ErrHandlerClosure = this;
  s = natsConnection_JetStream(&js_, nc_, &jo);
  if (s != NATS_OK) {
    s_.set_error("JetStream context: " + nats_error(s));
    return false;
  }
  return true;
}

bool nats_connection::reopen() {
  live_nc_ = nullptr;
  if (js_) jsCtx_Destroy(js_);
  js_ = nullptr;
  {
    std::lock_guard lock(closed_mutex_);
    current_ = nullptr;  // its callbacks from now on are not the link's
  }
  if (nc_ && !natsConnection_IsClosed(nc_)) {  // open() connected but failed after (JetStream)
    natsConnection_Close(nc_);
    wait_closed(nc_, 1s);
  }
  if (nc_) retired_.push_back({nc_, std::chrono::steady_clock::now()});
  nc_ = nullptr;
  destroy_retired(false);
  if (nopts_) natsOptions_Destroy(nopts_);
  nopts_ = nullptr;
  return open();
}

bool nats_connection::wait_closed(natsConnection* nc, std::chrono::milliseconds up_to) {
  std::unique_lock lock(closed_mutex_);
  return closed_cv_.wait_for(lock, up_to, [&] { return std::ranges::find(closed_, nc) != closed_.end(); });
}

void nats_connection::destroy(natsConnection* nc) {
  natsConnection_Destroy(nc);
  std::lock_guard lock(closed_mutex_);
  std::erase(closed_, nc);  // the address may be a new connection's one day
}

// A minute after it was replaced, and once its last callback ran, a closed connection is
// held by no call of another thread (those end at once on a closed connection; a request in
// flight is woken by the close). All of them when closing: false if one's last callback
// did not come within a second (it is then left, as the caller leaves this object).
bool nats_connection::destroy_retired(bool all) {
  auto old = std::chrono::steady_clock::now() - 60s;
  bool quiet = true;
  std::erase_if(retired_, [&](retired const& r) {
    if (!all && r.at > old) return false;
    if (!wait_closed(r.nc, all ? 1s : 0s)) {
      quiet = quiet && !all;
      return all;
    }
    destroy(r.nc);
    return true;
  });
  return quiet;
}

bool nats_connection::close() {
  bool quiet = destroy_retired(true);
  if (js_) jsCtx_Destroy(js_);
  js_ = nullptr;
  live_nc_ = nullptr;
  if (nc_) {
    natsConnection_Close(nc_);
    // The closed callback is the connection's last: after it no callback can touch us.
    if (wait_closed(nc_, 1s))
      destroy(nc_);
    else
      quiet = false;
  }
  if (nopts_) natsOptions_Destroy(nopts_);
  nc_ = nullptr;
  nopts_ = nullptr;
  return quiet;
}

bool nats_connection::up() const {
  auto* conn = live_nc_.load();
  return conn && natsConnection_Status(conn) == NATS_CONN_STATUS_CONNECTED;
}

std::string nats_connection::server_url() const {
  auto* conn = live_nc_.load();
  char url[256] = {0};
  if (!up() || natsConnection_GetConnectedUrl(conn, url, sizeof url) != NATS_OK) return {};
  return url;
}

void nats_connection::publish_live(std::string const& subject, std::string const& data) {
  auto* conn = live_nc_.load();
  if (!s_.connected || !conn) return;
  natsConnection_Publish(conn, subject.c_str(), data.data(), static_cast<int>(data.size()));
}

std::optional<std::string> nats_connection::request_live(std::string const& subject, std::string const& data,
                                                         int timeout_ms) {
  auto* conn = live_nc_.load();
  if (!s_.connected || !conn) return std::nullopt;
  natsMsg* reply = nullptr;
  if (natsConnection_Request(&reply, conn, subject.c_str(), data.data(), static_cast<int>(data.size()), timeout_ms) !=
      NATS_OK)
    return std::nullopt;
  std::string out(natsMsg_GetData(reply), static_cast<std::size_t>(natsMsg_GetDataLength(reply)));
  natsMsg_Destroy(reply);
  return out;
}

// --- NATS.c threads ----------------------------------------------------------------------

bool nats_connection::is_old(natsConnection* nc) {
  std::lock_guard lock(closed_mutex_);
  return current_ != nullptr && nc != current_;
}

void nats_connection::on_connected(natsConnection* nc, void* self) {
  if (static_cast<nats_connection*>(self)->is_old(nc)) return;  // a connection replaced since
  auto& s = static_cast<nats_connection*>(self)->s_;
  s.connected = true;
  s.need_setup = true;
  s.log->info("federation: connected to NATS");
  s.wake();
}

void nats_connection::on_disconnected(natsConnection* nc, void* self) {
  if (static_cast<nats_connection*>(self)->is_old(nc)) return;  // a connection replaced since
  auto& s = static_cast<nats_connection*>(self)->s_;
  if (s.stopping) return;
  bool was = s.connected.exchange(false);
  std::string why = connection_error(nc);
  if (was)
    s.log->warn("federation: lost the NATS connection{}{}; local work goes on, federation traffic waits",
                why.empty() ? "" : ": ", why);
  // Said at once, and as what it is: all of NATS is gone, not one region.
  s.set_unreachable(was, why);
}

void nats_connection::on_closed(natsConnection* nc, void* self) {
  auto* me = static_cast<nats_connection*>(self);
  auto& s = me->s_;
  bool ours = false;  // the connection in use, closed by NATS.c, not by us
  {
    std::lock_guard lock(me->closed_mutex_);
    ours = nc == me->current_;
  }
  if (ours && !s.stopping) {
    // NATS.c gave up (the same authorization error twice, an error it does not know). The
    // manager opens a new connection; NATS.c would never reconnect this one. The last error
    // stays what it was: NATS.c's own by now says only "No server available".
    std::string why = connection_error(nc);
    s.connected = false;
    s.log->warn("federation: NATS closed the connection{}{}; opening a new one", why.empty() ? "" : ": ", why);
    s.closed = true;
    s.wake();
  }
  // Last: once it is said, the connection (and, when stopping, this object) may go.
  std::lock_guard lock(me->closed_mutex_);
  me->closed_.push_back(nc);
  me->closed_cv_.notify_all();
}

// Asynchronous errors: authorization refused, permissions, slow consumer...
void nats_connection::on_error(natsConnection* nc, natsSubscription*, natsStatus err, void* self) {
  auto& s = static_cast<nats_connection*>(self)->s_;
  std::string why = connection_error(nc);
  s.set_error("NATS: " + (why.empty() ? std::string(natsStatus_GetText(err)) : why));
}

void nats_connection::on_publish_error(jsCtx*, jsPubAckErr*, void* self) {
  static_cast<nats_connection*>(self)->publish_failures_.fetch_add(1);
}

}  // namespace petchat::federation::detail
