std = "lua54"
max_line_length = 100
self = false -- methods need not use self
files["tests/"] = { std = "+busted" }
