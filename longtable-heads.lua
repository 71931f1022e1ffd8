-- Quarto (1.7) writes a cross-referenced table as a longtable whose \caption sits in the head that
-- longtable repeats on every page (quarto-cli issue 14146), so a table that crosses a page break
-- shows its caption twice. Give the first page the caption (\endfirsthead) and later pages
-- "(continued)" above the column header (\endhead), longtable's own idiom.
function RawBlock(el)
  if el.format ~= "latex" or not el.text:match("^%s*\\toprule") or el.text:find("\\endfirsthead", 1, true) then return nil end
  local header, rest = el.text:match("^(.-)\\endhead(.*)$")
  if not header then return nil end
  el.text = header .. "\\endfirsthead\n\\caption[]{(continued)}\\tabularnewline\n" .. header .. "\\endhead" .. rest
  return el
end
