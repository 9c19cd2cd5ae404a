#include <magic.h>
#include <vips/vips.h>

#include <mutex>
#include <string_view>

#include "node/assets/detail/images.hpp"

namespace petchat::assets::detail {
namespace {

// libmagic's handle is not thread-safe: one per pool thread, loaded once.
struct magic_handle {
  magic_t cookie = nullptr;
  magic_handle() {
    cookie = ::magic_open(MAGIC_MIME_TYPE | MAGIC_NO_CHECK_COMPRESS | MAGIC_NO_CHECK_ELF | MAGIC_NO_CHECK_TAR |
                          MAGIC_NO_CHECK_CDF);
    if (cookie && ::magic_load(cookie, nullptr) != 0) {
      ::magic_close(cookie);
      cookie = nullptr;
    }
  }
  ~magic_handle() {
    if (cookie) ::magic_close(cookie);
  }
};

// libvips objects released at the end of a scope.
struct image_ref {
  VipsImage* image = nullptr;
  ~image_ref() {
    if (image) g_object_unref(image);
  }
};

// When a thumbnail's computation is to stop (libvips' "eval" signal, between pieces).
struct deadline {
  gint64 at_us = 0;  // g_get_monotonic_time()
  bool passed = false;
};

void on_eval(VipsImage* image, VipsProgress*, void* data) {
  auto* d = static_cast<deadline*>(data);
  if (g_get_monotonic_time() < d->at_us) return;
  d->passed = true;
  vips_image_set_kill(image, TRUE);
}

}  // namespace

std::string sniff(std::string_view head) {
  thread_local magic_handle magic;
  if (!magic.cookie || head.empty()) return "application/octet-stream";
  char const* type = ::magic_buffer(magic.cookie, head.data(), head.size());
  if (!type) return "application/octet-stream";
  std::string out(type);
  if (out.empty() || out.size() > 255 || out.find('/') == std::string::npos) return "application/octet-stream";
  return out;
}

bool is_image(std::string_view t) {
  return t == "image/jpeg" || t == "image/png" || t == "image/gif" || t == "image/webp" || t == "image/heic" ||
         t == "image/heif" || t == "image/avif";
}

void start_images() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (VIPS_INIT("petchat-node") != 0) return;
    vips_cache_set_max(0);           // nothing of one user's image is kept for another's
    vips_concurrency_set(1);         // the pool's threads are the parallelism
    vips_block_untrusted_set(TRUE);  // only the loaders meant for untrusted input
  });
}

image_facts examine_image(std::filesystem::path const& file, std::filesystem::path const& thumbnail,
                          std::uint64_t max_pixels, std::uint32_t px, std::chrono::milliseconds time_limit) {
  start_images();
  deadline limit{g_get_monotonic_time() + static_cast<gint64>(time_limit.count()) * 1000};
  image_facts facts;
  image_ref header;
  // The header only: nothing is decoded yet.
  header.image = vips_image_new_from_file(file.c_str(), "access", VIPS_ACCESS_SEQUENTIAL, nullptr);
  if (!header.image) {
    vips_error_clear();
    return facts;
  }
  auto w = vips_image_get_width(header.image), h = vips_image_get_height(header.image);
  if (w <= 0 || h <= 0) return facts;
  facts.width = static_cast<std::uint32_t>(w);
  facts.height = static_cast<std::uint32_t>(h);
  // Counted as pixels of up to 4 bytes: a decoder that reads the picture whole first (an
  // interlaced PNG) holds every sample, and 16-bit samples or more bands make a file of a
  // few KB cost several times the memory its pixel count says.
  auto pixel_bytes = std::max<std::uint64_t>(4, static_cast<std::uint64_t>(VIPS_IMAGE_SIZEOF_PEL(header.image)));
  if (std::uint64_t(facts.width) * facts.height * pixel_bytes > max_pixels * 4) return facts;
  image_ref thumb;
  // A HEIF file may carry a preview picture of its own, which vips_thumbnail would take
  // when it is large enough: a sender chooses it, and it need not show the image at all.
  // The preview is made from the primary image instead.
  char const* loader = vips_foreign_find_load(file.c_str());
  bool heif = loader && std::string_view(loader).find("Heif") != std::string_view::npos;
  image_ref primary;
  if (heif)
    primary.image =
        vips_image_new_from_file(file.c_str(), "thumbnail", FALSE, "access", VIPS_ACCESS_SEQUENTIAL, nullptr);
  int made = heif ? (primary.image ? vips_thumbnail_image(primary.image, &thumb.image, static_cast<int>(px), "height",
                                                          static_cast<int>(px), "size", VIPS_SIZE_DOWN, nullptr)
                                   : -1)
                  : vips_thumbnail(file.c_str(), &thumb.image, static_cast<int>(px), "height", static_cast<int>(px),
                                   "size", VIPS_SIZE_DOWN, nullptr);
  if (made != 0) {
    vips_error_clear();
    return facts;
  }
  image_ref flat;
  VipsImage* out = thumb.image;
  if (vips_image_hasalpha(thumb.image)) {
    VipsArrayDouble* white = vips_array_double_newv(1, 255.0);
    int rc = vips_flatten(thumb.image, &flat.image, "background", white, nullptr);
    vips_area_unref(VIPS_AREA(white));
    if (rc != 0) {
      vips_error_clear();
      return facts;
    }
    out = flat.image;
  }
  // The pixels are computed here, as the thumbnail is written, piece by piece.
  vips_image_set_progress(out, TRUE);
  g_signal_connect(out, "eval", G_CALLBACK(on_eval), &limit);
  bool late = g_get_monotonic_time() >= limit.at_us;
  bool saved = !late && vips_jpegsave(out, thumbnail.c_str(), "strip", TRUE, "Q", 80, nullptr) == 0;
  g_signal_handlers_disconnect_by_data(out, &limit);
  if (!saved) {
    vips_error_clear();
    facts.timed_out = late || limit.passed;  // not another failure that came after the time
    return facts;
  }
  facts.thumbnail = true;
  return facts;
}

}  // namespace petchat::assets::detail
