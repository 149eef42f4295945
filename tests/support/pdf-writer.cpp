#include "tests/support/pdf-writer.h"

#include <cairo-pdf.h>
#include <cairo.h>

#include <cstdio>
#include <stdexcept>
#include <string_view>

namespace rag::test {

namespace {

constexpr double kPageWidth = 595;  // A4 in points
constexpr double kPageHeight = 842;
constexpr double kMargin = 56;
constexpr double kFontSize = 11;
constexpr double kLineHeight = 15;

std::vector<std::string> split(std::string_view text, std::string_view separator) {
  std::vector<std::string> parts;
  size_t pos = 0;
  for (;;) {
    size_t at = text.find(separator, pos);
    parts.emplace_back(text.substr(pos, at == std::string_view::npos ? std::string_view::npos : at - pos));
    if (at == std::string_view::npos) return parts;
    pos = at + separator.size();
  }
}

// Greedy word wrap to the text width.
std::vector<std::string> wrap(cairo_t* cr, const std::string& paragraph) {
  std::vector<std::string> lines;
  std::string line;
  for (const std::string& word : split(paragraph, " ")) {
    if (word.empty()) continue;
    std::string candidate = line.empty() ? word : line + " " + word;
    cairo_text_extents_t extents;
    cairo_text_extents(cr, candidate.c_str(), &extents);
    if (!line.empty() && extents.x_advance > kPageWidth - 2 * kMargin) {
      lines.push_back(line);
      line = word;
    } else {
      line = candidate;
    }
  }
  if (!line.empty()) lines.push_back(line);
  return lines;
}

}  // namespace

#if defined(__SANITIZE_ADDRESS__)
// cairo's font selection initialises fontconfig, which keeps its configuration until exit by design;
// LeakSanitizer would report it in every test that writes a PDF.
extern "C" const char* __lsan_default_suppressions() {
  return "leak:libfontconfig.so\n";
}
#endif

void write_pdf(const std::string& path, const std::vector<std::string>& pages, const std::string& title) {
  cairo_surface_t* surface = cairo_pdf_surface_create(path.c_str(), kPageWidth, kPageHeight);
  if (!title.empty()) cairo_pdf_surface_set_metadata(surface, CAIRO_PDF_METADATA_TITLE, title.c_str());
  cairo_t* cr = cairo_create(surface);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, kFontSize);
  for (const std::string& page : pages) {
    double y = kMargin + kFontSize;
    for (const std::string& paragraph : split(page, "\n\n")) {
      std::string flat = paragraph;
      for (char& c : flat)
        if (c == '\n') c = ' ';
      for (const std::string& line : wrap(cr, flat)) {
        if (y > kPageHeight - kMargin) break;
        cairo_move_to(cr, kMargin, y);
        cairo_show_text(cr, line.c_str());
        y += kLineHeight;
      }
      y += kLineHeight;  // the blank line between paragraphs
    }
    cairo_show_page(cr);
  }
  cairo_status_t status = cairo_status(cr);
  cairo_destroy(cr);
  cairo_surface_finish(surface);
  if (status == CAIRO_STATUS_SUCCESS) status = cairo_surface_status(surface);
  cairo_surface_destroy(surface);
  if (status != CAIRO_STATUS_SUCCESS)
    throw std::runtime_error("write_pdf " + path + ": " + cairo_status_to_string(status));
}

std::string pdf_from_objects(const std::vector<std::string>& objects, const std::string& trailer_extra) {
  std::string pdf = "%PDF-1.4\n";
  std::vector<size_t> offsets;
  for (size_t i = 0; i < objects.size(); ++i) {
    offsets.push_back(pdf.size());
    pdf += std::to_string(i + 1) + " 0 obj\n" + objects[i] + "\nendobj\n";
  }
  const size_t xref = pdf.size();
  pdf += "xref\n0 " + std::to_string(objects.size() + 1) + "\n0000000000 65535 f \n";
  for (size_t offset : offsets) {
    char line[32];
    std::snprintf(line, sizeof line, "%010zu 00000 n \n", offset);
    pdf += line;
  }
  pdf += "trailer\n<< /Size " + std::to_string(objects.size() + 1) + " /Root 1 0 R " + trailer_extra +
         " >>\nstartxref\n" + std::to_string(xref) + "\n%%EOF\n";
  return pdf;
}

}  // namespace rag::test
