-- Thin float32 products (core/cpu/sgemm_small.c: M, N or K <= 32) against the same
-- product in float64 (OpenBLAS): every layout the kernels take, the tails of their blocks
-- (rows of 6 and 3, columns of 16, 8 and 4, K not a multiple of 8), and beta.
local lunar = require("lunar")
local H = require("tests.helper")

-- float32 rounding grows with the length of the dot products
local function check(got, a, b)
  local want = a:double():matmul(b:double())
  H.close(got:double(), want, 1e-5, 1e-5 + 2e-7 * a:size(a:dim()))
end

-- an [r, c] float32 matrix whose storage holds it transposed when t is true
local function mat(r, c, t)
  if t then return lunar.randn(c, r):t() end
  return lunar.randn(r, c)
end

describe("thin float32 matmul", function()
  lunar.manual_seed(7)

  it("matches float64 for every layout and tail", function()
    local shapes = {
      {6, 784, 25}, {16, 100, 150}, {150, 100, 16}, {25, 6, 784}, {150, 16, 100},
      {1, 1, 1}, {2, 3, 1}, {7, 17, 9}, {5, 8, 3}, {13, 15, 8}, {3, 33, 300},
      {40, 9, 12}, {33, 5, 257}, {64, 10, 84}, {10, 84, 64}, {4, 1, 31},
    }
    for _, s in ipairs(shapes) do
      local m, n, k = s[1], s[2], s[3]
      for _, ta in ipairs({false, true}) do
        for _, tb in ipairs({false, true}) do
          local a, b = mat(m, k, ta), mat(k, n, tb)
          check(a:matmul(b), a, b)
        end
      end
    end
  end)

  it("splits large thin products between threads with the same bits as one thread", function()
    -- from 2^18 multiply-adds the columns of C are shared out in blocks of 16
    local saved = lunar.get_num_threads()
    -- (larger products, and both operands stored transposed, go to OpenBLAS: close there,
    -- not the same bits)
    local shapes = {{6, 12544, 25}, {25, 6, 12544}, {5, 20001, 7}, {16, 3000, 9}}
    for _, s in ipairs(shapes) do
      local m, n, k = s[1], s[2], s[3]
      for _, t in ipairs({{false, false}, {true, false}, {false, true}}) do
        local a, b = mat(m, k, t[1]), mat(k, n, t[2])
        lunar.set_num_threads(1)
        local one = a:matmul(b)
        lunar.set_num_threads(2)
        local two = a:matmul(b)
        lunar.set_num_threads(saved)
        H.close(two, one, 0, 0)
        check(two, a, b)
      end
    end
  end)

  it("row-strided operands and a batch with a broadcast operand", function()
    local a = lunar.randn(9, 40):narrow(2, 3, 20) -- row stride 40
    local b = lunar.randn(20, 48):narrow(2, 5, 21)
    check(a:matmul(b), a, b)
    local w = lunar.randn(6, 25)
    local cols = lunar.randn(4, 25, 50)
    local y = w:matmul(cols)
    for i = 1, 4 do check(y[i], w, cols[i]) end
  end)

  it("addmm: beta scales the existing values, beta 0 ignores them", function()
    local c = lunar.randn(7, 19)
    local a, b = lunar.randn(7, 5), lunar.randn(5, 19)
    local want = c:double() * 0.5 + a:double():matmul(b:double()) * 2
    H.close(lunar.addmm(c, a, b, {beta = 0.5, alpha = 2}):double(), want, 1e-5, 1e-5)
    local nan = lunar.full({7, 19}, 0 / 0)
    H.close(lunar.addmm(nan, a, b, {beta = 0}):double(), a:double():matmul(b:double()),
      1e-5, 1e-5)
    local bt = lunar.randn(19, 40):t() -- b given transposed
    local a2 = lunar.randn(7, 40)
    H.close(lunar.addmm(c, a2, bt, {beta = 0.5}):double(),
      c:double() * 0.5 + a2:double():matmul(bt:double()), 1e-5, 1e-5)
  end)
end)

-- im2col's whole-row copies (column stride 1, rows of at least 32 bytes, out of a
-- zero-padded plane) and col2im's whole-row sums against a direct convolution in Lua.
describe("conv2d with stride-1 columns against a direct loop", function()
  lunar.manual_seed(11)

  local function direct(x, w, o)
    local X, W = x:totable(), w:totable()
    local n, c, h, wd = x:size(1), x:size(2), x:size(3), x:size(4)
    local co, kh, kw = w:size(1), w:size(3), w:size(4)
    local sh, sw, dh, dw = o.stride[1], o.stride[2], o.dilation[1], o.dilation[2]
    local pt, pl = o.padding[1], o.padding[2]
    local oh = (h + 2 * pt - dh * (kh - 1) - 1) // sh + 1
    local ow = (wd + 2 * pl - dw * (kw - 1) - 1) // sw + 1
    local y, gw, gx = {}, {}, {}
    for b = 1, n do
      gx[b] = {}
      for ci = 1, c do
        gx[b][ci] = {}
        for iy = 1, h do
          gx[b][ci][iy] = {}
          for ix = 1, wd do gx[b][ci][iy][ix] = 0 end
        end
      end
    end
    for q = 1, co do
      gw[q] = {}
      for ci = 1, c do
        gw[q][ci] = {}
        for ki = 1, kh do
          gw[q][ci][ki] = {}
          for kj = 1, kw do gw[q][ci][ki][kj] = 0 end
        end
      end
    end
    for b = 1, n do
      y[b] = {}
      for q = 1, co do
        y[b][q] = {}
        for oy = 1, oh do
          y[b][q][oy] = {}
          for ox = 1, ow do
            local s = 0
            for ci = 1, c do
              for ki = 1, kh do
                local iy = (oy - 1) * sh - pt + (ki - 1) * dh + 1
                for kj = 1, kw do
                  local ix = (ox - 1) * sw - pl + (kj - 1) * dw + 1
                  if iy >= 1 and iy <= h and ix >= 1 and ix <= wd then
                    local v = X[b][ci][iy][ix]
                    s = s + v * W[q][ci][ki][kj]
                    gw[q][ci][ki][kj] = gw[q][ci][ki][kj] + v -- d sum(y) / dw
                    gx[b][ci][iy][ix] = gx[b][ci][iy][ix] + W[q][ci][ki][kj]
                  end
                end
              end
            end
            y[b][q][oy][ox] = s
          end
        end
      end
    end
    return y, gw, gx
  end

  it("padding, dilation and row stride; forward, weight and input gradients", function()
    local cases = {
      {x = {2, 1, 28, 28}, w = {6, 1, 5, 5},
        o = {stride = {1, 1}, padding = {2, 2}, dilation = {1, 1}}},
      {x = {2, 3, 9, 13}, w = {4, 3, 3, 2},
        o = {stride = {2, 1}, padding = {1, 0}, dilation = {1, 2}}},
      {x = {1, 2, 7, 20}, w = {3, 2, 2, 3},
        o = {stride = {1, 1}, padding = {0, 3}, dilation = {2, 1}}},
      {x = {2, 6, 14, 14}, w = {16, 6, 5, 5}, -- LeNet's conv2: 10-wide rows
        o = {stride = {1, 1}, padding = {0, 0}, dilation = {1, 1}}},
      {x = {1, 2, 9, 18}, w = {2, 2, 3, 3}, -- 16-wide rows: no partial vector
        o = {stride = {1, 1}, padding = {0, 0}, dilation = {1, 1}}},
    }
    for _, cs in ipairs(cases) do
      for _, dt in ipairs({"float32", "float64"}) do
        local x = lunar.randn(cs.x, {dtype = dt, requires_grad = true})
        local w = lunar.randn(cs.w, {dtype = dt, requires_grad = true})
        local y = lunar.conv2d(x, w, nil, cs.o)
        y:sum():backward()
        local ry, rgw, rgx = direct(x, w, cs.o)
        H.close(y, ry, 1e-5, 1e-4)
        H.close(w.grad, rgw, 1e-5, 1e-4)
        H.close(x.grad, rgx, 1e-5, 1e-4)
      end
    end
  end)
end)

-- max_pool2d 2x2 stride 2 in blocks of 8 or 4 outputs (the last block overlapping) against
-- a direct loop: values, 1-based indices per plane, the first maximum on ties, NaN wins; the
-- backward (written whole when the windows tile the plane) against a scatter by the indices.
describe("max_pool2d 2x2 rows in blocks of 8", function()
  it("matches a direct loop for row widths around the block size", function()
    for _, wd in ipairs({6, 7, 8, 10, 11, 14, 16, 18, 28, 34}) do
      local x = (lunar.randn(2, 3, 6, wd) * 2):round() -- many ties
      local X = x:totable()
      X[1][2][3][5] = 0 / 0
      x = lunar.tensor(X, {requires_grad = true})
      local y, idx = lunar.max_pool2d(x, 2, {return_indices = true})
      local gy = lunar.randn(y.shape)
      gy:narrow(4, 1, 1):fill_(-0.0);
      (y * gy):sum():backward()
      local Y, I, GY, GX = y:totable(), idx:totable(), gy:totable(), x.grad:totable()
      for b = 1, 2 do
        for c = 1, 3 do
          local want = {}
          for i = 1, 6 * wd do want[i] = 0 end
          for oy = 1, 3 do
            for ox = 1, wd // 2 do
              local j = I[b][c][oy][ox]
              want[j] = want[j] + GY[b][c][oy][ox]
            end
          end
          for iy = 1, 6 do
            for ix = 1, wd do
              local got, exp = GX[b][c][iy][ix], want[(iy - 1) * wd + ix]
              assert(got == exp and 1 / got == 1 / exp,
                ("w %d: gx[%d][%d][%d][%d] = %s, expected %s"):format(wd, b, c, iy, ix, got, exp))
            end
          end
        end
      end
      for b = 1, 2 do
        for c = 1, 3 do
          for oy = 1, 3 do
            for ox = 1, wd // 2 do
              local best, bi = -math.huge, nil
              for dy = 0, 1 do
                for dx = 0, 1 do
                  local iy, ix = 2 * oy - 1 + dy, 2 * ox - 1 + dx
                  local v = X[b][c][iy][ix]
                  if bi == nil or v > best or v ~= v then
                    if best == best then best, bi = v, (iy - 1) * wd + ix end
                  end
                end
              end
              local got = Y[b][c][oy][ox]
              assert(got == best or (got ~= got and best ~= best),
                ("w %d: y[%d][%d][%d][%d] = %s, expected %s"):format(wd, b, c, oy, ox, got, best))
              assert.are.equal(bi, I[b][c][oy][ox])
            end
          end
        end
      end
    end
  end)
end)
