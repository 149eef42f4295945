// Writes small text PDFs for tests and the sample corpus, with cairo's PDF surface.
#pragma once

#include <string>
#include <vector>

namespace rag::test {

// One PDF page per entry of `pages` (A4, 11 pt Helvetica-like sans). Paragraphs are separated by "\n\n"
// in the input and by a blank line on the page; long lines wrap at word boundaries; text that does not
// fit on its page is cut off. `title` goes into the document information dictionary (omitted if empty).
// Throws std::runtime_error when cairo cannot write `path`.
void write_pdf(const std::string& path, const std::vector<std::string>& pages, const std::string& title);

// A PDF's bytes built by hand from object bodies (numbered from 1; object 1 is the /Root) with a correct xref
// table; `trailer_extra` goes into the trailer dictionary. For cases cairo would never write.
std::string pdf_from_objects(const std::vector<std::string>& objects, const std::string& trailer_extra = "");

}  // namespace rag::test
