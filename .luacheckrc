std = "lua54"
codes = true
max_line_length = 110
files["spec/"] = { std = "+busted" }
files["policies/"] = { read_globals = { "config", "log" } }
exclude_files = { "build", "build-asan" }
