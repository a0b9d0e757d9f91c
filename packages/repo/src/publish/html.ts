// A browsable page per architecture: what a person sees when opening
// REPO/ARCH/ in a browser. Generated from the index records only, so it is
// deterministic and costs nothing per package.

import type { IndexRecord } from "@kiln/apk";

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

function size(n: number | undefined): string {
  if (n === undefined) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function date(t: number | undefined): string {
  return t === undefined
    ? ""
    : new Date(t * 1000)
        .toISOString()
        .replace("T", " ")
        .replace(/\.\d+Z$/, " UTC");
}

export function renderArchIndexHtml(
  arch: string,
  records: readonly IndexRecord[],
  opts: { keyName?: string; description?: string } = {},
): string {
  const rows = records.map((r) => {
    const file = `${r.name}-${r.version}.apk`;
    return `<tr id="${esc(r.name)}"><td><a href="${esc(encodeURIComponent(file))}">${esc(r.name)}</a></td><td>${esc(r.version)}</td><td data-bytes="${r.fileSize ?? ""}">${size(r.fileSize)}</td><td>${esc(r.description ?? "")}</td><td>${date(r.buildDate)}</td><td>${r.depends.map((d) => `<code>${esc(d)}</code>`).join(" ")}</td></tr>`;
  });
  const title = `${opts.description ? `${opts.description} — ` : ""}${arch}`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 0.3em 0.6em; border-bottom: 1px solid #ddd; vertical-align: top; }
th { background: #f4f4f4; position: sticky; top: 0; }
td:nth-child(3) { text-align: right; white-space: nowrap; }
code { font-size: 0.9em; }
</style>
</head>
<body>
<h1>${esc(title)}</h1>
<p>${records.length} package${records.length === 1 ? "" : "s"} · <a href="APKINDEX.tar.gz">APKINDEX.tar.gz</a>${opts.keyName ? ` · signing key <a href="../${esc(encodeURIComponent(opts.keyName))}">${esc(opts.keyName)}</a>` : ""}</p>
<table>
<thead><tr><th>name</th><th>version</th><th>size</th><th>description</th><th>build date</th><th>dependencies</th></tr></thead>
<tbody>
${rows.join("\n")}
</tbody>
</table>
</body>
</html>
`;
}
