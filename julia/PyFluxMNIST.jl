"""
    PyFluxMNIST

The Julia half of pyflux-mnist: builds a Flux `Chain` of `Dense` layers from weights that Python
passes in, trains it with the explicit API (`Flux.setup`, `Flux.withgradient`, `Flux.update!`) on
batches whose order Python chooses, and hands back plain Tuples, Vectors and numbers (a NamedTuple
would reach Python as an opaque wrapper).

Conventions, shared with the NumPy backend (`pyflux_mnist/backends/numpy_backend.py`):

* `params` is `[W1, b1, W2, b2, …]`, `W` of size `(out, in)` Float32; samples are columns.
* `loss` is `"crossentropy"` (softmax at the end of the Chain + `Flux.crossentropy`),
  `"logitcrossentropy"` (logits + `Flux.logitcrossentropy`) or `"squared_error"`
  (mean over samples of ½Σ(ŷ - y)²).
* `bias = false`: every layer is `Dense(W, false, σ)`: no bias, nothing to train.
* batches arrive as 0-based sample indices (Python's), flattened, with one size per batch;
  a size of `-1` means the full batch.
"""
module PyFluxMNIST

using Flux

export build_model, Trainer, train_steps!, parameters, optimiser_state, load_optimiser_state!,
       probabilities, predict, evaluate, versions

const ACTIVATIONS = Dict{String,Function}(
    "relu" => relu, "sigmoid" => sigmoid, "tanh" => tanh, "identity" => identity)
const LOSSES = ("crossentropy", "logitcrossentropy", "squared_error")
const OPTIMISERS = ("adam", "descent", "rmsprop")

choices(xs) = join(xs, ", ")

"""
    build_model(params, activations, loss, bias) -> Chain

`Chain(Dense(W1, b1, σ1), Dense(W2, b2, σ2), …)`, with `softmax` appended for `"crossentropy"`.
Every array is copied into a `Matrix{Float32}`/`Vector{Float32}`, so the model never aliases
Python memory.
"""
function build_model(params, activations, loss::AbstractString, bias::Bool)
    loss in LOSSES ||
        throw(ArgumentError("loss must be one of $(choices(LOSSES)), got \"$loss\""))
    n = length(activations)
    n >= 1 || throw(ArgumentError("expected at least one layer (one activation per Dense layer)"))
    length(params) == 2n || throw(ArgumentError(
        "expected $(2n) arrays [W1, b1, …] for $n layers, got $(length(params))"))
    layers = Any[]
    fan_in = 0
    for i in 1:n
        W, b = params[2i-1], params[2i]
        ndims(W) == 2 || throw(ArgumentError(
            "layer $i: expected a weight matrix of size (out, in), got an array of size $(size(W))"))
        i == 1 || size(W, 2) == fan_in || throw(ArgumentError(
            "layer $i: expected a weight matrix with $fan_in columns (out, in), got size $(size(W))"))
        size(b) == (size(W, 1),) || throw(ArgumentError(
            "layer $i: expected a bias vector of length $(size(W, 1)), got size $(size(b))"))
        name = String(activations[i])
        haskey(ACTIVATIONS, name) || throw(ArgumentError(
            "layer $i: activation must be one of $(choices(sort(collect(keys(ACTIVATIONS))))), got \"$name\""))
        σ = ACTIVATIONS[name]
        if bias
            push!(layers, Dense(Matrix{Float32}(W), Vector{Float32}(b), σ))
        else
            all(iszero, b) || throw(ArgumentError(
                "layer $i: bias=false expects all-zero biases (they are never used or trained)"))
            push!(layers, Dense(Matrix{Float32}(W), false, σ))
        end
        fan_in = size(W, 1)
    end
    fan_in == 10 || throw(ArgumentError(
        "expected the last layer to have 10 outputs (digits 0-9), got $fan_in"))
    loss == "crossentropy" && push!(layers, softmax)
    return Chain(layers...)
end

"""The loss `(model, x, y) -> Float32`, as the recipe names it."""
function loss_function(loss::AbstractString)
    loss == "crossentropy" && return (m, x, y) -> Flux.crossentropy(m(x), y)
    loss == "logitcrossentropy" && return (m, x, y) -> Flux.logitcrossentropy(m(x), y)
    loss == "squared_error" && return (m, x, y) -> sum(abs2, m(x) .- y) / (2 * size(y, 2))
    throw(ArgumentError("loss must be one of $(choices(LOSSES)), got \"$loss\""))
end

"""
    rule(name, lr, beta1, beta2, rho, eps)

The Optimisers.jl rule. Spelled `Flux.Optimisers.Adam` etc.: on Flux 0.14 the exported `Adam`
is still the legacy `Flux.Optimise` rule (converted by `setup`); on 0.15+ both names are the same.
"""
function rule(name::AbstractString, lr::Real, beta1::Real, beta2::Real, rho::Real, eps::Real)
    lr > 0 || throw(ArgumentError("learning rate must be positive, got $lr"))
    name == "adam" && return Flux.Optimisers.Adam(lr, (beta1, beta2), eps)
    name == "descent" && return Flux.Optimisers.Descent(lr)
    name == "rmsprop" && return Flux.Optimisers.RMSProp(lr, rho, eps)
    throw(ArgumentError("optimiser must be one of $(choices(OPTIMISERS)), got \"$name\""))
end

"""
    Trainer(params, activations, loss, bias, X, Y; optimiser="adam", lr=1e-3, beta1=0.9,
            beta2=0.999, rho=0.9, eps=1e-8)

A training run: the model, its optimiser state (`Flux.setup`), and the data. `X` (in × N) and
`Y` (10 × N) are copied ONCE into `Matrix{Float32}`: what Python passes is a `PyArray` (a
zero-copy view of NumPy memory), which is not a `DenseArray`, so `W * X` on it would not call BLAS.
"""
mutable struct Trainer{M,S,L}
    model::M
    opt_state::S
    loss::L
    X::Matrix{Float32}
    Y::Matrix{Float32}
    optimiser::String
    t::Int
end

function Trainer(params, activations, loss::AbstractString, bias::Bool, X, Y;
                 optimiser::AbstractString="adam", lr::Real=1e-3, beta1::Real=0.9,
                 beta2::Real=0.999, rho::Real=0.9, eps::Real=1e-8)
    model = build_model(params, activations, loss, bias)
    ndims(X) == 2 && ndims(Y) == 2 || throw(ArgumentError(
        "expected X (features × samples) and Y (10 × samples) matrices, got sizes $(size(X)) and $(size(Y))"))
    size(X, 1) == size(model[1].weight, 2) || throw(ArgumentError(
        "expected X with $(size(model[1].weight, 2)) rows (features × samples), got size $(size(X))"))
    size(Y) == (10, size(X, 2)) || throw(ArgumentError(
        "expected Y of size (10, $(size(X, 2))) (targets × samples), got size $(size(Y))"))
    size(X, 2) >= 1 || throw(ArgumentError("expected at least one sample, got none"))
    opt_state = Flux.setup(rule(optimiser, lr, beta1, beta2, rho, eps), model)
    return Trainer(model, opt_state, loss_function(loss), Matrix{Float32}(X), Matrix{Float32}(Y),
                   String(optimiser), 0)
end

"""One optimiser step on `(x, y)`; the loss before the update."""
function step!(tr::Trainer, x::AbstractMatrix{Float32}, y::AbstractMatrix{Float32})
    l, grads = Flux.withgradient(m -> tr.loss(m, x, y), tr.model)
    tr.opt_state, tr.model = Flux.update!(tr.opt_state, tr.model, grads[1])
    tr.t += 1
    return Float32(l)
end

"""
    train_steps!(tr, indices, sizes) -> Vector{Float32}

`length(sizes)` steps. Batch `k` is the next `sizes[k]` entries of `indices` (0-based sample
numbers, as Python numbers them); `sizes[k] == -1` means the full batch. Returns the losses.
"""
function train_steps!(tr::Trainer, indices::AbstractVector{<:Integer}, sizes::AbstractVector{<:Integer})
    idx = Vector{Int}(indices) .+ 1
    n = size(tr.X, 2)
    all(i -> 1 <= i <= n, idx) || throw(ArgumentError(
        "batch indices must be 0-based sample numbers in 0:$(n - 1), got values in $(extrema(idx) .- 1)"))
    all(s -> s == -1 || s >= 1, sizes) || throw(ArgumentError(
        "batch sizes must be positive (or -1 for the full batch), got $(collect(sizes))"))
    sum(s -> max(s, 0), sizes; init=0) == length(idx) || throw(ArgumentError(
        "expected $(sum(s -> max(s, 0), sizes; init=0)) indices for batch sizes $(collect(sizes)), got $(length(idx))"))
    losses = Vector{Float32}(undef, length(sizes))
    pos = 0
    for (k, s) in enumerate(sizes)
        if s == -1
            losses[k] = step!(tr, tr.X, tr.Y)
        else
            cols = idx[pos+1:pos+s]
            pos += s
            losses[k] = step!(tr, tr.X[:, cols], tr.Y[:, cols])
        end
    end
    return losses
end

dense_layers(model::Chain) = Tuple(l for l in model.layers if l isa Dense)
bias_array(d::Dense) = d.bias isa AbstractArray ? d.bias : zeros(Float32, size(d.weight, 1))

"""Copies of `[W1, b1, W2, b2, …]` as a Tuple (zero vectors for `bias=false` layers)."""
parameters(model::Chain) = Tuple(Iterators.flatten((copy(d.weight), copy(bias_array(d))) for d in dense_layers(model)))
parameters(tr::Trainer) = parameters(tr.model)

"""The `Optimisers.Leaf` of every parameter in `[W1, b1, …]` order (`nothing` where untrained)."""
function leaves(tr::Trainer)
    out = Any[]
    for i in eachindex(dense_layers(tr.model))
        s = tr.opt_state.layers[i]
        for f in (:weight, :bias)
            leaf = getproperty(s, f)
            push!(out, leaf isa Flux.Optimisers.Leaf ? leaf : nothing)
        end
    end
    return out
end

# RMSProp's state is `acc` in older Optimisers.jl and `(acc, lin)` (lin for the centred variant) in newer.
rms_acc(state) = state isa Tuple ? state[1] : state

"""
    adam_beta_t(rule, x, t)

Adam's running product `βt` after `t` steps, replayed with the installed Optimisers.jl's own `init` and
`apply!` on a one-element array of `x`'s eltype, so its type and rounding are exactly what an uninterrupted
run holds. Rebuilding it by hand is not version-proof: up to Optimisers 0.3.0 `init` keeps the rule's own
`beta` (FluxML/Optimisers.jl v0.3.0 src/rules.jl:209, `init(o::Adam, x::AbstractArray) = (zero(x),
zero(x), o.beta)`: Float64 for our rules) and multiplies it by `o.beta` (v0.2.12 src/rules.jl:217) or by
`T.(o.beta)` (v0.3.0 src/rules.jl:219); from 0.3.1 on it starts at `T.(o.beta)` (v0.4.8 src/rules.jl:214).
Flux 0.14.0 allows Optimisers 0.2.12 (FluxML/Flux.jl v0.14.0 Project.toml, `Optimisers = "0.2.12"`).
"""
function adam_beta_t(rule, x::AbstractArray, t::Integer)
    z = fill!(similar(x, 1), 0)
    state = Flux.Optimisers.init(rule, z)
    for _ in 1:t
        state, _ = Flux.Optimisers.apply!(rule, state, z, z)
    end
    return state[3]
end

"""
    optimiser_state(tr) -> (t, slots...)

`t` is the number of steps taken. Then one Tuple of arrays (in `[W1, b1, …]` order) per slot:
Adam `m, v` (the first two entries of the `Optimisers.Leaf` state `(m, v, βt)`); RMSProp `acc`;
Descent nothing. Untrained parameters (`bias=false`) give zeros.
"""
function optimiser_state(tr::Trainer)
    ps = parameters(tr)
    ls = leaves(tr)
    slot(f) = Tuple(l === nothing ? zero(p) : copy(f(l.state)) for (l, p) in zip(ls, ps))
    tr.optimiser == "adam" && return (tr.t, slot(s -> s[1]), slot(s -> s[2]))
    tr.optimiser == "rmsprop" && return (tr.t, slot(rms_acc))
    return (tr.t,)
end

"""
    load_optimiser_state!(tr, t, slots...)

Restore what `optimiser_state` returned. Arrays are copied into the Leaf state in place; for Adam
`βt` (`β^(t+1)`) is rebuilt by `adam_beta_t`, exactly as the installed Optimisers.jl would hold it.
"""
function load_optimiser_state!(tr::Trainer, t::Integer, slots...)
    t >= 0 || throw(ArgumentError("expected a non-negative step count t, got $t"))
    want = tr.optimiser == "adam" ? 2 : tr.optimiser == "rmsprop" ? 1 : 0
    length(slots) == want || throw(ArgumentError(
        "optimiser $(tr.optimiser) expects $want state slot(s), got $(length(slots))"))
    ls = leaves(tr)
    for (k, arrays) in enumerate(slots)
        length(arrays) == length(ls) || throw(ArgumentError(
            "slot $k: expected $(length(ls)) arrays ([W1, b1, …]), got $(length(arrays))"))
        for (l, a) in zip(ls, arrays)
            l === nothing && continue
            dst = tr.optimiser == "adam" ? l.state[k] : rms_acc(l.state)
            size(dst) == size(a) || throw(ArgumentError(
                "slot $k: expected an array of size $(size(dst)), got $(size(a))"))
            copyto!(dst, Array{Float32}(a))
        end
    end
    live = filter(!isnothing, ls)
    if tr.optimiser == "adam" && !isempty(live)
        # One rule (`Flux.setup`'s) and one eltype (Float32) for every leaf: replay it once, not per leaf.
        βt = adam_beta_t(live[1].rule, live[1].state[1], t)
        for l in live
            l.state = (l.state[1], l.state[2], βt)  # Leaf is mutable
        end
    end
    tr.t = t
    return nothing
end

"""
    probabilities(params, activations, loss, bias, X) -> Matrix{Float32}

Class probabilities (10 × N); for `"squared_error"` networks, the output activations.
"""
function probabilities(model::Chain, loss::AbstractString, X)
    ŷ = model(Matrix{Float32}(X))
    return loss == "logitcrossentropy" ? softmax(ŷ) : ŷ
end
probabilities(params, activations, loss::AbstractString, bias::Bool, X) =
    probabilities(build_model(params, activations, loss, bias), loss, X)

"""`Flux.onecold` of the network output, with labels `0:9`."""
predict(args...) = Flux.onecold(probabilities(args...), 0:9)

"""
    evaluate(model, loss, X, labels) -> (predictions, accuracy)

Predicted digits (`Flux.onecold(ŷ, 0:9)`) and the fraction equal to `labels` (digits 0-9).
"""
function evaluate(model::Chain, loss::AbstractString, X, labels)
    length(labels) == size(X, 2) || throw(ArgumentError(
        "expected $(size(X, 2)) labels (one per column of X), got $(length(labels))"))
    ŷ = predict(model, loss, X)
    return (ŷ, count(ŷ .== Vector{Int}(labels)) / length(ŷ))
end
evaluate(tr::Trainer, loss::AbstractString, X, labels) = evaluate(tr.model, loss, X, labels)

"""`(Julia, Flux, Optimisers as Flux loaded it, Julia threads)` as strings, for reports: what really runs."""
function versions()
    optimisers = pkgversion(Flux.Optimisers)
    return (string(VERSION), string(pkgversion(Flux)), string(optimisers), string(Threads.nthreads()))
end

end # module
