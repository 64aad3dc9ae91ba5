#pragma once
// Text for an XML attribute or element (the SVG plot, the JUnit file). XML 1.0 cannot carry most control
// characters at all, not even as character references, so they become '?': a readable file beats one a
// browser or a CI system rejects. Newline, tab and carriage return are written as references, which keeps
// them inside attributes, where a raw newline would be read as a space.
#include <string>
#include <string_view>

namespace qsafe::eval {

inline std::string xml_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (const char c : text) {
        switch (c) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&apos;"; break;
            case '\n': out += "&#10;"; break;
            case '\t': out += "&#9;"; break;
            case '\r': out += "&#13;"; break;
            default: out += static_cast<unsigned char>(c) < 0x20 ? '?' : c;
        }
    }
    return out;
}

}  // namespace qsafe::eval
