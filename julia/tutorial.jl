# The classic Flux.jl MNIST tutorial, run natively in Julia with today's explicit API.
#
#     julia --project=. julia/tutorial.jl [MNIST_DIR] [STEPS]
#
# MNIST_DIR (or ENV["PYFLUX_MNIST_DATA"]) holds the four IDX files, gzipped or not (the gzipped
# ones are read through the `gzip` command). STEPS defaults to 200, as in the tutorial.
# On a fresh checkout, first (the checkout has Project.toml but no Manifest.toml):
#
#     pyflux-mnist data download --data-dir mnist
#     julia --project=. -e 'using Pkg; Pkg.instantiate()'
#
# The tutorial's own training line,
#
#     Flux.train!(loss, params(m), Iterators.repeated((X, Y), 200), ADAM())
#
# no longer runs. What fails depends on the Flux version (docs/flux-backend.md has the sources):
#
# * every Flux from 0.14 on: `params` is not exported (only `Flux.params`), so the line as written stops
#   at `params`: UndefVarError;
# * Flux 0.14.0-0.14.21: with `Flux.params`, it still runs (`ADAM` is a deprecated alias of the legacy
#   `Flux.Optimise.Adam`, and implicit `train!` still takes it);
# * Flux 0.14.22-0.14.25: `ADAM` is gone (FluxML/Flux.jl#2493): UndefVarError: ADAM;
# * Flux 0.15 and 0.16: `ADAM` is back, deprecated: Optimisers.jl's `@deprecate ADAM Adam`, which Flux
#   re-exports with `@reexport using Optimisers`; but it builds an Optimisers.jl rule, and `train!` with
#   implicit `Flux.params` refuses one ("can't mix implicit Params with explicit rule from Optimisers.jl");
#   `Flux.params` itself is deprecated.
#
# The modern equivalent is
#
#     loss(m, x, y) = Flux.crossentropy(m(x), y)
#     opt_state = Flux.setup(Adam(), m)
#     Flux.train!(loss, m, Iterators.repeated((X, Y), 200), opt_state)
#
# This script spells that loop out (withgradient + update!) so it can time every step: it is the
# native baseline for pyflux-mnist's benchmark, and prints the time per step after warm-up.

using Flux
using LinearAlgebra: BLAS
using Random
using Statistics: mean, median

"""Read one IDX file (big-endian header, then UInt8 data); `.gz` files are read through `gzip -dc`."""
function read_idx(path::AbstractString)
    bytes = endswith(path, ".gz") ? read(`gzip -dc $path`) : read(path)
    length(bytes) >= 4 && bytes[1] == 0 && bytes[2] == 0 && bytes[3] == 0x08 ||
        throw(ArgumentError("$path: expected an IDX file of unsigned bytes (magic 0x0000080n)"))
    nd = Int(bytes[4])
    dims = [Int(ntoh(reinterpret(UInt32, bytes[5+4k:8+4k])[1])) for k in 0:nd-1]
    data = bytes[5+4nd:end]
    length(data) == prod(dims) ||
        throw(ArgumentError("$path: header says $(prod(dims)) values, file has $(length(data))"))
    # IDX is row-major: the last dimension varies fastest, i.e. Julia's first after reversing.
    return reshape(data, reverse(dims)...)
end

function find_file(dir, stem)
    for name in (stem, stem * ".gz")
        path = joinpath(dir, name)
        isfile(path) && return path
    end
    throw(ArgumentError("$(joinpath(dir, stem))[.gz] not found: pass the MNIST directory as the first argument"))
end

"""Images as 784 × N Float32 in [0, 1] (pixel rows of each image in order) and labels 0-9."""
function load_mnist(dir, split)
    images = read_idx(find_file(dir, "$split-images-idx3-ubyte"))  # 28 × 28 × N, column = pixel row
    labels = read_idx(find_file(dir, "$split-labels-idx1-ubyte"))
    X = Float32.(reshape(images, 28 * 28, :)) ./ 255f0
    return X, Int.(vec(labels))
end

function main(args)
    dir = length(args) >= 1 ? args[1] : get(ENV, "PYFLUX_MNIST_DATA", "")
    isempty(dir) && throw(ArgumentError("usage: julia --project=. julia/tutorial.jl MNIST_DIR [STEPS]"))
    steps = length(args) >= 2 ? parse(Int, args[2]) : 200
    steps >= 2 || throw(ArgumentError("expected at least 2 steps (one is warm-up), got $steps"))

    X, labels = load_mnist(dir, "train")
    Y = Flux.onehotbatch(labels, 0:9)
    Xtest, test_labels = load_mnist(dir, "t10k")

    Random.seed!(0)
    m = Chain(Dense(28^2 => 32, relu), Dense(32 => 10), softmax)
    loss(m, x, y) = Flux.crossentropy(m(x), y)
    opt_state = Flux.setup(Adam(), m)
    accuracy(x, y) = mean(Flux.onecold(m(x), 0:9) .== y)

    times = Float64[]
    for step in 1:steps
        t0 = time_ns()
        l, grads = Flux.withgradient(m -> loss(m, X, Y), m)
        Flux.update!(opt_state, m, grads[1])
        push!(times, (time_ns() - t0) / 1e9)
        (step == 1 || step % 10 == 0 || step == steps) &&
            println("step $step: loss $(round(l; digits=4))")
    end
    println("first step (compilation included): $(round(times[1]; digits=3)) s")
    println("time per step after warm-up: median $(round(1e3 * median(times[2:end]); digits=3)) ms " *
            "over $(steps - 1) steps (Julia $(VERSION), $(Threads.nthreads()) thread(s), " *
            "BLAS threads $(BLAS.get_num_threads()))")
    println("train accuracy: $(round(accuracy(X, labels); digits=4))")
    println("test accuracy: $(round(accuracy(Xtest, test_labels); digits=4))")
end

# The check is the one Julia's FAQ gives (JuliaLang/julia doc/src/manual/faq.md, "How do I check if the
# current file is being run as the main script?"), inside `if ... end`. Never `... == @__FILE__ && main(ARGS)`:
# a macro call without parentheses takes the rest of the line as its arguments (`@name expr1 expr2 ...`), so
# JuliaSyntax, Julia's parser since 1.10, reads `(macrocall @__FILE__ (error &&) (call main ARGS))` and stops
# with a ParseError. tests/test_julia_files.py checks every .jl file with two parsers.
if abspath(PROGRAM_FILE) == @__FILE__
    main(ARGS)
end
