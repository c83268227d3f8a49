// The batch report page (report.h).
#include <styleclip/workflows/report.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <styleclip/io/atomic_file.h>

namespace styleclip {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

/// Text for HTML element content and attribute values.
std::string escape(const std::string& s) {
  std::string out;
  for (const char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

/// A relative link to a file beside the page: each path segment percent-encoded.
std::string href(const fs::path& rel) {
  std::string out;
  for (const unsigned char c : rel.generic_string()) {
    if (std::isalnum(c) != 0 || c == '/' || c == '.' || c == '-' || c == '_') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string number(const json& v, int digits) {
  if (!v.is_number()) return "";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v.get<double>());
  return buf;
}

struct Row {
  fs::path dir;  // relative to the report's folder
  json side;
};

constexpr const char* kHead = R"(<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>styleclip edit report</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; } .meta { color: #666; }
.gallery { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; border: 1px solid #ddd; padding: .5em; width: 320px; }
figure img, figure video { width: 100%; image-rendering: pixelated; display: block; }
figcaption { font-size: 12px; word-break: break-all; }
.failed { border-color: #c33; } .failed figcaption::before { content: "failed: "; color: #c33; }
table { border-collapse: collapse; margin-top: 1.5em; }
th, td { border: 1px solid #ddd; padding: .25em .5em; text-align: left; }
th { cursor: pointer; background: #f4f4f4; user-select: none; }
th[data-dir="1"]::after { content: " \25B2"; } th[data-dir="-1"]::after { content: " \25BC"; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
</style></head><body>
)";

constexpr const char* kScript = R"(<script>
// Click a column's header to sort by it (numbers as numbers), again to reverse.
document.querySelectorAll("#metrics th").forEach(function (th, col) {
  th.addEventListener("click", function () {
    var dir = th.dataset.dir === "1" ? -1 : 1;
    document.querySelectorAll("#metrics th").forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = String(dir);
    var body = document.querySelector("#metrics tbody");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return dir * c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
// A link may ask for a sorted view: index.html#sort=5 sorts by the sixth column, #sort=-5 the
// other way round.
(function () {
  var m = /^#sort=(-?)(\d+)$/.exec(location.hash);
  var th = m && document.querySelectorAll("#metrics th")[Number(m[2])];
  if (th) { th.click(); if (m[1]) th.click(); }
})();
</script>
)";

std::string figure(const Row& r) {
  const auto& side = r.side;
  const auto outputs = side.value("outputs", json::object());
  std::string html = std::string("<figure") +
                     (side.value("status", "ok") == "ok" ? "" : " class=\"failed\"") + ">";
  for (const char* key : {"photo_compare", "compare", "image"}) {
    if (!outputs.contains(key)) continue;
    html += "<img loading=\"lazy\" src=\"" + href(r.dir / outputs[key].get<std::string>()) +
            "\" alt=\"" + escape(outputs[key].get<std::string>()) + "\">";
    break;
  }
  for (const char* key : {"strength_sweep", "threshold_sweep"}) {
    if (outputs.contains(key)) {
      html += "<img loading=\"lazy\" src=\"" + href(r.dir / outputs[key].get<std::string>()) +
              "\" alt=\"" + key + "\">";
    }
  }
  for (const char* key : {"video", "strength_sweep_video"}) {
    if (outputs.contains(key)) {
      const auto file = r.dir / outputs[key].get<std::string>();
      html += "<video controls muted src=\"" + href(file) + "\"></video>";
    }
  }
  html += "<figcaption>" + escape(side.value("prompt", std::string())) + " · " +
          escape(outputs.value("image", std::string())) +
          (side.contains("error") ? " — " + escape(side.value("error", std::string())) : "") +
          "</figcaption></figure>\n";
  return html;
}

std::string table_row(const Row& r) {
  const auto& side = r.side;
  const auto m = side.value("metrics", json::object());
  const auto t = side.value("timing", json::object());
  const auto outputs = side.value("outputs", json::object());
  const auto before = m.value("clip_similarity_before", json());
  const auto after = m.value("clip_similarity_after", json());
  const json gain = before.is_number() && after.is_number()
                        ? json(after.get<double>() - before.get<double>())
                        : json();
  std::string html = "<tr><td>" + escape((r.dir / outputs.value("image", "")).generic_string()) +
                     "</td><td>" + escape(side.value("prompt", std::string())) + "</td><td>" +
                     escape(side.value("engine", std::string())) + "</td><td>" +
                     escape(side.value("status", std::string())) + "</td>";
  for (const auto& v : {before, after, gain, m.value("identity_similarity", json())}) {
    html += "<td class=\"num\">" + number(v, 4) + "</td>";
  }
  html += "<td class=\"num\">" + number(t.value("batch_seconds", json()), 2) + "</td></tr>\n";
  return html;
}

}  // namespace

ReportSummary write_edit_report(const fs::path& out) {
  std::vector<Row> rows;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(out, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    const auto& p = it->path();
    if (!it->is_regular_file(ec) || p.extension() != ".json") continue;
    try {
      std::ifstream in(p);
      auto side = json::parse(in);
      if (!side.is_object() || side.value("command", "") != "edit") continue;
      auto dir = p.parent_path().lexically_relative(out);
      if (dir == ".") dir.clear();
      rows.push_back({dir, std::move(side)});
    } catch (const std::exception&) {
      continue;  // not a sidecar (or being written by another shard): left out
    }
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return (a.dir / a.side.value("outputs", json::object()).value("image", "")).generic_string() <
           (b.dir / b.side.value("outputs", json::object()).value("image", "")).generic_string();
  });
  std::size_t failed = 0;
  for (const auto& r : rows) failed += r.side.value("status", "ok") == "ok" ? 0 : 1;
  std::string html = kHead;
  html += "<h1>styleclip edit report</h1><p class=\"meta\">" + std::to_string(rows.size()) +
          " results, " + std::to_string(failed) + " failed · " +
          escape(fs::absolute(out).string()) + "</p>\n<div class=\"gallery\">\n";
  for (const auto& r : rows) html += figure(r);
  html +=
      "</div>\n<table id=\"metrics\"><thead><tr><th>image</th><th>prompt</th><th>engine</th>"
      "<th>status</th><th>CLIP before</th><th>CLIP after</th><th>CLIP gain</th>"
      "<th>identity</th><th>batch s</th></tr></thead><tbody>\n";
  for (const auto& r : rows) html += table_row(r);
  html += "</tbody></table>\n";
  html += kScript;
  html += "</body></html>\n";
  ReportSummary s{out / "index.html", rows.size()};
  write_file_atomic(s.file, html);
  return s;
}

}  // namespace styleclip
