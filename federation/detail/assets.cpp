#include "federation/detail/assets.hpp"

#include <string_view>

#include "base/format/format.hpp"

namespace petchat::federation::detail {

bool asset_exchange::setup() {
  if (sub_ && natsSubscription_IsValid(sub_)) return true;
  if (sub_) {
    natsSubscription_Destroy(sub_);
    sub_ = nullptr;
  }
  if (!server_) return true;  // this node serves no assets
  auto st = natsConnection_Subscribe(&sub_, conn_.nc(), s_.names.asset_filter.c_str(), &on_request, this);
  if (st != NATS_OK) {
    sub_ = nullptr;
    s_.set_error("cannot subscribe to " + s_.names.asset_filter + ": " + nats_error(st));
    return false;
  }
  return true;
}

void asset_exchange::drain() {
  if (sub_ && conn_.up() && natsSubscription_Drain(sub_) == NATS_OK)
    natsSubscription_WaitForDrainCompletion(sub_, 2000);
}

void asset_exchange::destroy() {
  if (!sub_) return;
  natsSubscription_Unsubscribe(sub_);
  natsSubscription_Destroy(sub_);
  sub_ = nullptr;
}

std::optional<asset_piece> asset_exchange::fetch(std::string const& region, asset_request const& request,
                                                 int timeout_ms) {
  body b;
  b.set_origin(s_.dir.self());
  b.set_destination(region);
  b.set_created_at_ms(format::now_ms());
  *b.mutable_asset_request() = request;
  auto sealed = seal({b.SerializeAsString()}, s_.dir.self(), s_.key);
  auto reply = conn_.request_live(s_.names.asset_to(region), sealed, timeout_ms);
  if (!reply) return std::nullopt;
  auto opened = open(*reply, region, s_.dir);
  for (auto r : opened.refused) s_.count(r, "asset piece from " + region);
  if (opened.bodies.size() != 1) return std::nullopt;
  auto& item = opened.bodies.front();
  if (item.refused) {
    s_.count(*item.refused, "asset piece from " + region);
    return std::nullopt;
  }
  if (!item.content.has_asset_piece() || item.content.asset_piece().hash() != request.hash()) {
    s_.count(reject_reason::malformed, "asset piece from " + region);
    return std::nullopt;
  }
  return item.content.asset_piece();
}

void asset_exchange::on_request(natsConnection*, natsSubscription*, natsMsg* msg, void* self) {
  auto* me = static_cast<asset_exchange*>(self);
  try {
    me->answer(msg);
  } catch (std::exception const& e) {
    me->s_.log->error("federation: answering an asset request failed: {}", e.what());
  }
  natsMsg_Destroy(msg);
}

// A request older (or further ahead) than this is a replay: the clock skew federation
// tolerates elsewhere (5 minutes), not presence's 30 s, so that regions whose clocks
// disagree a little still fetch.
constexpr std::int64_t request_max_age_ms = 5 * 60 * 1000;

void asset_exchange::answer(natsMsg* msg) {
  char const* reply_to = natsMsg_GetReply(msg);
  if (!reply_to || !server_) return;
  std::string_view data(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
  auto asker = last_token(natsMsg_GetSubject(msg));
  auto opened = open(data, asker, s_.dir);
  for (auto r : opened.refused) s_.count(r, "asset request from " + asker);
  if (opened.bodies.size() != 1) return;
  auto& item = opened.bodies.front();
  // Answers go only to the asker's own inboxes (_INBOX.<asker>.…, where its requests wait):
  // a reply subject naming another region's stream or inbox would have this node publish
  // signed pieces of 256 KiB there for a request of a few hundred bytes.
  auto inbox = std::string(inbox_root) + asker + ".";
  if (item.refused || !item.content.has_asset_request() || !std::string_view(reply_to).starts_with(inbox)) {
    s_.count(item.refused.value_or(reject_reason::malformed), "asset request from " + asker);
    return;
  }
  if (std::int64_t created = item.content.created_at_ms(), now = format::now_ms();
      created < now - request_max_age_ms || created > now + request_max_age_ms) {
    s_.count(reject_reason::stale, "asset request from " + asker);
    return;
  }
  if (auto now = format::now_ms(); served_.take(asker, now) > 0) {
    if (auto& told = told_over_[asker]; now - told >= 60000) {
      told = now;
      s_.log->warn("federation: region {} asks for asset pieces faster than {} a second: not answered", asker,
                   pieces_per_second);
    }
    return;
  }
  body b;
  b.set_origin(s_.dir.self());
  b.set_destination(asker);
  b.set_created_at_ms(format::now_ms());
  *b.mutable_asset_piece() = server_(asker, item.content.asset_request());
  b.mutable_asset_piece()->set_hash(item.content.asset_request().hash());
  auto sealed = seal({b.SerializeAsString()}, s_.dir.self(), s_.key);
  conn_.publish_live(reply_to, sealed);
}

}  // namespace petchat::federation::detail
