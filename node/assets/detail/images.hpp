// What the bytes are: the content type sniffed by libmagic, and for images their size and a
// thumbnail made by libvips. Blocking and CPU-heavy: run on the asset service's pool.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace petchat::assets::detail {

// The MIME type of `head` (a file's first bytes), e.g. "image/png";
// "application/octet-stream" when nothing is recognised. Compressed data is not looked
// into (no decompression bombs here).
std::string sniff(std::string_view head);

// Whether a sniffed type is an image libvips is asked to read.
bool is_image(std::string_view content_type);

struct image_facts {
  std::uint32_t width = 0, height = 0;
  bool thumbnail = false;  // written to the given path
  bool timed_out = false;  // stopped at the time limit: no thumbnail
};

// Reads the image's header; if it has at most `max_pixels` pixels, writes a JPEG thumbnail
// whose longer side is at most `px`, every metadata block stripped, to `thumbnail`.
// Nothing is decoded beyond the header of a larger image. An image libvips cannot read
// gives no facts (zeros). Making the thumbnail stops once `time_limit` has passed since
// the call (checked between the pieces libvips computes, so a decoder that reads a whole
// image in one piece, as for an interlaced PNG, stops only after it): the size is still
// told, with no thumbnail. Never throws.
image_facts examine_image(std::filesystem::path const& file, std::filesystem::path const& thumbnail,
                          std::uint64_t max_pixels, std::uint32_t px, std::chrono::milliseconds time_limit);

// Starts libvips (once per process); idempotent.
void start_images();

}  // namespace petchat::assets::detail
