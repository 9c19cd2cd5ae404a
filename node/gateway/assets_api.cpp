// The asset endpoints of the user API (docs/PROTOCOL.md, "Assets"): uploads in one request
// or resumable, downloads with ranges. Upload bodies are streamed (user_api_streams).
#include <charconv>

#include "node/gateway/detail/json_body.hpp"
#include "node/gateway/detail/user_api.hpp"

namespace petchat::gateway {

using errors::code;
using errors::fail;
using namespace detail;

bool user_api_streams(std::string_view method, std::string_view path) {
  return (method == "POST" && path == "/v1/assets") || (method == "PATCH" && path.starts_with("/v1/uploads/"));
}

namespace {

json::object asset_json(messages::asset_view const& a) {
  json::object o{{"id", assets::print_id(a.hash)},   {"size", a.size},
                 {"content_type", a.content_type},   {"name", a.name},
                 {"declared_type", a.declared_type}, {"created_at_ms", std::to_string(a.created_at_ms)}};
  if (a.width && a.height) {
    o["width"] = a.width;
    o["height"] = a.height;
  }
  if (!a.thumbnail.empty()) o["thumbnail_id"] = assets::print_id(a.thumbnail);
  return o;
}

json::object upload_json(messages::upload_view const& u) {
  return {{"upload_id", u.id},
          {"offset", u.offset},
          {"length", u.length},
          {"expires_at_ms", std::to_string(u.expires_at_ms)}};
}

void upload_headers(response& r, messages::upload_view const& u) {
  r.headers.emplace_back("Upload-Offset", std::to_string(u.offset));
  r.headers.emplace_back("Upload-Length", std::to_string(u.length));
  r.headers.emplace_back("Cache-Control", "no-store");
}

// A plain decimal number of a header, or nullopt.
std::optional<std::uint64_t> header_number(request const& r, std::string const& name) {
  auto text = r.header(name);
  std::uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return v;
}

// The declared name from `?name=`, cleaned; invalid_field if it is not UTF-8 or malformed.
errors::result<std::string> declared_name(std::string_view query) {
  auto raw = query_param(query, "name");
  if (!raw) return std::string();
  auto clean = format::clean_file_name(*raw);
  if (!clean) return fail(code::invalid_field, "name must be UTF-8", "name");
  return *clean;
}

std::string declared_type_of(std::string type) {
  if (type.size() > 255 || !format::utf8_length(type)) return "";
  return type;
}

awaitable<response> upload_one(std::shared_ptr<user_api> api, request r, users::principal const& who) {
  if (!r.body_length) co_return error_response(fail(code::length_required, "an upload needs a Content-Length"));
  auto name = declared_name(r.query);
  if (!name) co_return error_response(name.error());
  if (*r.body_length > api->assets->limits().max_asset_bytes)
    co_return error_response(fail(code::asset_too_large, "the asset is larger than the largest allowed (" +
                                                             std::to_string(api->assets->limits().max_asset_bytes) +
                                                             " bytes)"));
  auto a = co_await api->assets->upload(api->id_of(who), *name, declared_type_of(r.header("content-type")),
                                        *r.body_length, *r.body_stream);
  if (!a) co_return error_response(a.error());
  co_return json_response(201, asset_json(*a));
}

awaitable<response> begin_upload(std::shared_ptr<user_api> api, request r, users::principal const& who) {
  auto body = parse_object(r.body);
  if (!body) co_return error_response(body.error());
  messages::upload_view spec;
  auto const* length = body->if_contains("length");
  if (!length || length->is_null()) co_return error_response(fail(code::missing_field, "length is required", "length"));
  if (!length->is_int64() && !length->is_uint64())
    co_return error_response(fail(code::invalid_field, "length must be a whole number of bytes", "length"));
  if (length->is_int64() && length->get_int64() <= 0)
    co_return error_response(fail(code::invalid_field, "length must be at least 1", "length"));
  spec.length = length->is_uint64() ? length->get_uint64() : static_cast<std::uint64_t>(length->get_int64());
  auto name = optional_string(*body, "name");
  if (!name) co_return error_response(name.error());
  if (name->has_value()) {
    auto clean = format::clean_file_name(**name);
    if (!clean) co_return error_response(fail(code::invalid_field, "name must be UTF-8", "name"));
    spec.name = *clean;
  }
  auto type = optional_string(*body, "content_type");
  if (!type) co_return error_response(type.error());
  spec.declared_type = declared_type_of(type->value_or(""));
  auto hash = optional_string(*body, "hash");
  if (!hash) co_return error_response(hash.error());
  if (hash->has_value()) {
    spec.expected_hash = assets::parse_id(**hash);
    if (spec.expected_hash.empty())
      co_return error_response(fail(code::invalid_field, "hash must be 64 lower-case hex digits", "hash"));
  }
  auto up = co_await api->assets->begin(api->id_of(who), std::move(spec));
  if (!up) co_return error_response(up.error());
  auto res = json_response(201, upload_json(*up));
  res.headers.emplace_back("Location", "/v1/uploads/" + up->id);
  upload_headers(res, *up);
  co_return res;
}

awaitable<response> append_chunk(std::shared_ptr<user_api> api, request r, users::principal const& who,
                                 std::string id) {
  if (!r.body_length) co_return error_response(fail(code::length_required, "a chunk needs a Content-Length"));
  auto offset = header_number(r, "upload-offset");
  if (!offset)
    co_return error_response(fail(code::invalid_field, "Upload-Offset must be a decimal number", "upload-offset"));
  auto done = co_await api->assets->append(api->id_of(who), id, *offset, *r.body_length, *r.body_stream);
  if (!done) {
    auto res = error_response(done.error());
    for (auto const& [k, v] : done.error().numbers)
      if (k == "offset") res.headers.emplace_back("Upload-Offset", std::to_string(v));
    co_return res;
  }
  if (done->asset) {
    auto res = json_response(201, asset_json(*done->asset));
    upload_headers(res, done->upload);
    co_return res;
  }
  auto res = no_content();
  upload_headers(res, done->upload);
  co_return res;
}

}  // namespace

awaitable<response> download(std::shared_ptr<user_api> api, request r, users::principal const& who, std::string id,
                             bool by_link);  // assets_download.cpp

namespace {

// A download link's GET: the session it was made for, if the link is this asset's, has not
// expired, and its session is live.
awaitable<response> linked_download(std::shared_ptr<user_api> api, request r, std::string id,
                                    std::string const& token) {
  auto hash = assets::parse_id(id);
  auto device = hash.empty() ? errors::result<std::string>(fail(code::invalid_token, "the link is not valid"))
                             : api->assets->link_device(hash, token);
  if (!device) co_return error_response(device.error());
  auto who = api->users.session_of(*device);
  if (!who) co_return error_response(who.error());
  co_return co_await download(api, std::move(r), *who, std::move(id), true);
}

// POST /v1/assets/{id}/link: a link to the asset for this session's browser.
response make_link(user_api const& api, users::principal const& who, std::string const& id) {
  auto hash = assets::parse_id(id);
  auto a = hash.empty() ? errors::result<messages::asset_view>(fail(code::asset_not_found, "no such asset"))
                        : api.assets->find(api.id_of(who), hash);
  if (!a) return error_response(a.error());
  std::int64_t expires_at_ms = 0;
  auto token = api.assets->link(hash, who.device_id, expires_at_ms);
  return json_response(200, json::object{{"url", "/v1/assets/" + id + "?link=" + token},
                                         {"expires_at", format::rfc3339(expires_at_ms)}});
}

}  // namespace

awaitable<response> detail::assets_route(std::shared_ptr<user_api> api, request r) {
  if (!api->assets) co_return error_response(fail(code::not_found, "this node stores no assets"));
  auto const& p = r.path;
  auto const& m = r.method;
  constexpr std::string_view uploads = "/v1/uploads/", assets = "/v1/assets/";
  // A download link: its token in the query, and no access token (a browser behind a proxy
  // that asks for a password sends that proxy's Basic credentials with every navigation).
  if (p.starts_with(assets) && (m == "GET" || m == "HEAD") && !bearer_token(r.header("authorization")))
    if (auto link = query_param(r.query, "link")) {
      std::string id = p.substr(assets.size());
      co_return co_await linked_download(api, std::move(r), std::move(id), *link);
    }
  auto who = authenticate(*api, r);
  if (!who) co_return error_response(who.error());
  if (p == "/v1/assets") {
    if (m != "POST") co_return method_not_allowed("POST");
    co_return co_await upload_one(api, std::move(r), *who);
  }
  if (p == "/v1/uploads") {
    if (m != "POST") co_return method_not_allowed("POST");
    co_return co_await begin_upload(api, std::move(r), *who);
  }
  if (p.starts_with(uploads)) {
    std::string id = p.substr(uploads.size());
    if (m == "PATCH") co_return co_await append_chunk(api, std::move(r), *who, std::move(id));
    if (m == "DELETE") {
      auto done = co_await api->assets->cancel(api->id_of(*who), id);
      co_return done ? no_content() : error_response(done.error());
    }
    if (m != "GET" && m != "HEAD") co_return method_not_allowed("GET, HEAD, PATCH, DELETE");
    auto up = api->assets->state(api->id_of(*who), id);
    if (!up) co_return error_response(up.error());
    auto body = upload_json(*up);
    if (!up->asset.empty()) {  // complete: what it became (state() found it; gone since: as state() says)
      auto a = api->assets->find(api->id_of(*who), up->asset);
      if (!a)
        co_return error_response(
            fail(code::upload_not_found, "upload '" + id + "' was complete, but the asset it became is gone"));
      body["asset"] = asset_json(*a);
    }
    auto res = json_response(200, body);
    upload_headers(res, *up);
    co_return res;
  }
  if (p.starts_with(assets)) {
    std::string id = p.substr(assets.size());
    if (id.ends_with("/link")) {
      if (m != "POST") co_return method_not_allowed("POST");
      co_return make_link(*api, *who, id.substr(0, id.size() - 5));
    }
    if (m != "GET" && m != "HEAD") co_return method_not_allowed("GET, HEAD");
    co_return co_await download(api, std::move(r), *who, std::move(id), false);
  }
  co_return error_response(fail(code::not_found, "no endpoint " + p));
}

}  // namespace petchat::gateway
