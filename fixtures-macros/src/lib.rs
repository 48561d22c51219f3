//! `#[mock_image(...)]`: a test that receives a mock OCI image, built once per spec and
//! shared through image-maker's cache. Use it through `image_maker::mock_image`.
//!
//! The macro only parses and checks: the layer list, platform and reference are validated
//! here, at compile time, by the same grammar the CLI uses (the `image-maker-spec` crate),
//! and the test calls into `image_maker::__private` at run time.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, ToTokens};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned as _;
use syn::{Expr, ExprLit, FnArg, ItemFn, Lit, LitStr, MetaNameValue, Token};

use image_maker_spec::{config, platform, reference, spec};

/// Turns `fn t(img: MockImage) { … }` into a test that builds (or takes from the cache)
/// the image and passes it in.
///
/// Keys: `layers = "1GB,512MB"` (required; the CLI's `--layer-sizes` grammar),
/// `platform = "linux/arm64"` (or a list, `"linux/amd64,linux/arm64"`: an index of one image
/// per platform), `tag = "mock/big:1"` (the image's reference), `builder = "native"` (the default: an OCI layout in the cache) or `"dockerfile"` (an
/// image built, or found by its cache key, in a container engine), and with the dockerfile
/// builder `engine = "docker"` (or `podman`, `finch`, `nerdctl`, `buildah`; default: the
/// first that answers). The image's config: `entrypoint = "/bin/app -v"` and `cmd = "…"` (a
/// JSON array of strings, or words split on whitespace), `workdir = "/srv"`, `user =
/// "1000:1000"`, `stop_signal = "SIGTERM"`, and lists `env = ["K=V"]`, `labels = ["K=V"]`,
/// `annotations = ["K=V"]`, `expose = ["80/tcp"]`. `runnable = true` (or the layer list's
/// `run` options, `runnable = "ready=up:read=all"`) makes the image run our entrypoint. With another test attribute such as `#[tokio::test]` below it, no
/// `#[test]` is added; put `#[mock_image]` first.
#[proc_macro_attribute]
pub fn mock_image(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = TokenStream2::from(item);
    match expand(attr.into(), item.clone()) {
        Ok(tokens) => tokens.into(),
        Err(errors) => {
            // The item stays, so its own code is still checked and nothing else breaks.
            let mut out = errors.to_compile_error();
            out.extend(item);
            out.into()
        }
    }
}

#[derive(Default)]
struct Options {
    layers: Option<LitStr>,
    platform: Option<LitStr>,
    tag: Option<LitStr>,
    builder: Option<LitStr>,
    engine: Option<LitStr>,
    /// The config's values, in order: the grammar's key (`env`, `label`, …) and the value.
    config: Vec<(&'static str, LitStr)>,
    /// `runnable = true`, or `runnable = "OPTIONS"`: the `run` entry's options.
    runnable: Option<(Span, String)>,
}

/// The config keys that take one string, and those that take a list: the attribute's
/// spelling, and the grammar's key for each value.
const CONFIG_ONE: &[(&str, &str)] = &[
    ("entrypoint", "entrypoint"),
    ("cmd", "cmd"),
    ("workdir", "workdir"),
    ("user", "user"),
    ("stop_signal", "stop_signal"),
];
const CONFIG_LIST: &[(&str, &str)] = &[
    ("env", "env"),
    ("labels", "label"),
    ("annotations", "annotation"),
    ("expose", "expose"),
];
const KEYS: &str = "`layers`, `platform`, `tag`, `builder`, `engine`, `runnable`, `entrypoint`, `cmd`, `env`, `workdir`, `user`, `labels`, `annotations`, `expose` and `stop_signal`";

fn expand(attr: TokenStream2, item: TokenStream2) -> syn::Result<TokenStream2> {
    let mut errors = Errors::default();
    let options = errors.take(parse_options(attr));
    let function = match syn::parse2::<ItemFn>(item.clone()) {
        Ok(function) => Some(function),
        Err(_) => {
            errors.push(syn::Error::new_spanned(
                first_tokens(&item),
                "#[mock_image] goes on a test function, e.g. `fn t(img: MockImage) { … }`",
            ));
            None
        }
    };
    let binding = function
        .as_ref()
        .and_then(|f| errors.take(image_binding(f)));
    errors.finish()?;
    let (Some(options), Some(mut function), Some(binding)) = (options, function, binding) else {
        return Err(syn::Error::new(Span::call_site(), "invalid #[mock_image]"));
    };
    // `runnable` is the layer list's `run` entry: the list the fixture gets says it.
    let layers = match (
        options.layers.as_ref().map(LitStr::value),
        &options.runnable,
    ) {
        (Some(layers), Some((span, run))) => Some(
            spec::Spec::parse(&layers)
                .and_then(|spec| spec.with_run(run))
                .map(|spec| spec.canonical())
                .map_err(|e| {
                    syn::Error::new(
                        *span,
                        match e.hint() {
                            Some(hint) => format!("{e}\nhint: {hint}"),
                            None => e.to_string(),
                        },
                    )
                })?,
        ),
        (layers, _) => layers,
    };
    let platform = optional(options.platform.as_ref());
    let tag = optional(options.tag.as_ref());
    let builder = optional(options.builder.as_ref());
    let engine = optional(options.engine.as_ref());
    let config = options
        .config
        .iter()
        .map(|(key, lit)| quote! { (#key, #lit) });
    let acquire = quote! {
        ::image_maker::__private::mock_image(
            #layers, #platform, #tag, #builder, #engine, &[#(#config),*]
        )
    };
    let setup = match binding {
        Some((pat, ty)) => quote! { let #pat: #ty = #acquire; },
        None => quote! { let _ = #acquire; },
    };
    function.sig.inputs.clear();
    let has_test_attr = function
        .attrs
        .iter()
        .any(|a| a.path().segments.last().is_some_and(|s| s.ident == "test"));
    let test_attr = (!has_test_attr).then(|| quote! { #[test] });
    let ItemFn {
        attrs,
        vis,
        sig,
        block,
    } = function;
    Ok(quote! {
        #test_attr
        #(#attrs)*
        #vis #sig {
            #setup
            #block
        }
    })
}

fn optional(lit: Option<&LitStr>) -> TokenStream2 {
    match lit {
        Some(lit) => quote! { ::core::option::Option::Some(#lit) },
        None => quote! { ::core::option::Option::None },
    }
}

/// The function's one parameter, which receives the image; none is fine too.
fn image_binding(function: &ItemFn) -> syn::Result<Option<(Box<syn::Pat>, Box<syn::Type>)>> {
    let mut inputs = function.sig.inputs.iter();
    let first = inputs.next();
    if let Some(extra) = inputs.next() {
        return Err(syn::Error::new_spanned(
            extra,
            "a #[mock_image] test takes one parameter, the image: `img: MockImage`",
        ));
    }
    match first {
        None => Ok(None),
        Some(FnArg::Typed(arg)) => Ok(Some((arg.pat.clone(), arg.ty.clone()))),
        Some(receiver @ FnArg::Receiver(_)) => Err(syn::Error::new_spanned(
            receiver,
            "a #[mock_image] test is a free function, not a method",
        )),
    }
}

fn parse_options(attr: TokenStream2) -> syn::Result<Options> {
    let pairs = syn::parse::Parser::parse2(
        Punctuated::<MetaNameValue, Token![,]>::parse_terminated,
        attr,
    )
    .map_err(|e| {
        syn::Error::new(
            e.span(),
            format!("{e}: expected `key = \"value\"` pairs, e.g. `layers = \"1GB,512MB\"`"),
        )
    })?;
    let mut options = Options::default();
    let mut errors = Errors::default();
    let mut config_seen: Vec<String> = Vec::new();
    for pair in &pairs {
        let key = pair.path.get_ident().map(ToString::to_string);
        if let Some((name, setting)) = key.as_deref().and_then(|k| {
            CONFIG_ONE
                .iter()
                .chain(CONFIG_LIST)
                .find(|(name, _)| *name == k)
                .copied()
        }) {
            if config_seen.iter().any(|seen| seen == name) {
                errors.push(syn::Error::new_spanned(
                    &pair.path,
                    format!("`{name}` is given twice"),
                ));
                continue;
            }
            config_seen.push(name.to_owned());
            let list = CONFIG_LIST.iter().any(|(n, _)| *n == name);
            let lits = match (&pair.value, list) {
                (
                    Expr::Lit(ExprLit {
                        lit: Lit::Str(lit), ..
                    }),
                    false,
                ) => vec![lit.clone()],
                (Expr::Array(array), true) => {
                    let mut lits = Vec::new();
                    for element in &array.elems {
                        match element {
                            Expr::Lit(ExprLit {
                                lit: Lit::Str(lit), ..
                            }) => lits.push(lit.clone()),
                            other => errors.push(syn::Error::new_spanned(
                                other,
                                format!(
                                    "`{name}` takes a list of string literals, e.g. {}",
                                    example(name)
                                ),
                            )),
                        }
                    }
                    lits
                }
                (value, list) => {
                    let what = if list {
                        "a list of string literals"
                    } else {
                        "a string literal"
                    };
                    errors.push(syn::Error::new_spanned(
                        value,
                        format!("`{name}` takes {what}, e.g. {}", example(name)),
                    ));
                    continue;
                }
            };
            for lit in lits {
                match config::Setting::parse(setting, &lit.value()) {
                    Ok(_) => options.config.push((setting, lit)),
                    Err(e) => errors.push(syn::Error::new(
                        lit.span(),
                        match e.hint() {
                            Some(hint) => format!("{e}\nhint: {hint}"),
                            None => e.to_string(),
                        },
                    )),
                }
            }
            continue;
        }
        if key.as_deref() == Some("runnable") {
            let run = match &pair.value {
                Expr::Lit(ExprLit {
                    lit: Lit::Bool(b), ..
                }) => b.value.then(String::new),
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value()),
                other => {
                    errors.push(syn::Error::new_spanned(
                        other,
                        "`runnable` takes `true` or the `run` entry's options, e.g. `runnable = true` or `runnable = \"ready=up:read=all\"`",
                    ));
                    continue;
                }
            };
            if options.runnable.is_some() {
                errors.push(syn::Error::new_spanned(
                    &pair.path,
                    "`runnable` is given twice",
                ));
            }
            options.runnable = run.map(|r| (pair.value.span(), r));
            continue;
        }
        let slot = match key.as_deref() {
            Some("layers") => &mut options.layers,
            Some("platform") => &mut options.platform,
            Some("tag") => &mut options.tag,
            Some("builder") => &mut options.builder,
            Some("engine") => &mut options.engine,
            _ => {
                errors.push(syn::Error::new_spanned(
                    &pair.path,
                    format!(
                        "unknown key `{}`: the keys are {KEYS}",
                        pair.path.to_token_stream()
                    ),
                ));
                continue;
            }
        };
        let key = key.unwrap_or_default();
        let Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        }) = &pair.value
        else {
            errors.push(syn::Error::new_spanned(
                &pair.value,
                format!("`{key}` takes a string literal, e.g. {}", example(&key)),
            ));
            continue;
        };
        if slot.is_some() {
            errors.push(syn::Error::new_spanned(
                &pair.path,
                format!("`{key}` is given twice"),
            ));
            continue;
        }
        if let Err(message) = check(&key, &lit.value()) {
            errors.push(syn::Error::new(lit.span(), message));
        }
        *slot = Some(lit.clone());
    }
    // The engine is where the dockerfile builder builds; native images load anywhere.
    if let Some(engine) = &options.engine {
        if options.builder.as_ref().map(LitStr::value).as_deref() != Some("dockerfile") {
            errors.push(syn::Error::new(
                engine.span(),
                "`engine` is an option of the dockerfile builder\nhint: add `builder = \"dockerfile\"`",
            ));
        }
    }
    // What a Dockerfile cannot say, as the dockerfile builder refuses it at run time.
    if options.builder.as_ref().map(LitStr::value).as_deref() == Some("dockerfile") {
        for (key, lit) in &options.config {
            let what = match *key {
                "annotation" => "manifest annotations",
                "workdir" => "a working directory without a layer of its own",
                _ => continue,
            };
            errors.push(syn::Error::new(
                lit.span(),
                format!("the dockerfile builder cannot make {what}: `{}`\nhint: use the native builder (the default)", lit.value()),
            ));
        }
    }
    if options.layers.is_none() && !pairs.iter().any(|p| p.path.is_ident("layers")) {
        errors.push(syn::Error::new(
            Span::call_site(),
            "#[mock_image] needs the layers, e.g. `#[mock_image(layers = \"1GB,512MB\")]`",
        ));
    }
    errors.finish()?;
    Ok(options)
}

fn example(key: &str) -> &'static str {
    match key {
        "layers" => "`layers = \"1GB,512MB\"`",
        "platform" => "`platform = \"linux/arm64\"`",
        "builder" => "`builder = \"dockerfile\"`",
        "engine" => "`engine = \"docker\"`",
        "entrypoint" => "`entrypoint = \"/bin/app -v\"`",
        "cmd" => "`cmd = \"--port 8080\"`",
        "workdir" => "`workdir = \"/srv\"`",
        "user" => "`user = \"1000:1000\"`",
        "stop_signal" => "`stop_signal = \"SIGTERM\"`",
        "env" => "`env = [\"MODE=test\"]`",
        "labels" => "`labels = [\"team=storage\"]`",
        "annotations" => "`annotations = [\"org.example.a=b\"]`",
        "expose" => "`expose = [\"80/tcp\"]`",
        _ => "`tag = \"mock/big:1\"`",
    }
}

/// The value checked by the CLI's own grammar: the same message a user of the CLI sees.
fn check(key: &str, value: &str) -> Result<(), String> {
    let (error, hint) = match key {
        "layers" => match spec::Spec::parse(value) {
            Ok(_) => return Ok(()),
            Err(e) => (e.to_string(), e.hint().map(str::to_owned)),
        },
        "platform" => match platform::Platform::parse_list(value) {
            Ok(_) => return Ok(()),
            Err(e) => (e.to_string(), Some(e.hint().to_owned())),
        },
        "builder" => match value {
            "native" | "dockerfile" => return Ok(()),
            _ => (
                format!("unknown builder `{value}`"),
                Some("builders are `native` and `dockerfile`".to_owned()),
            ),
        },
        "engine" => match value {
            "docker" | "podman" | "finch" | "nerdctl" | "buildah" => return Ok(()),
            _ => (
                format!("unknown engine `{value}`"),
                Some("engines are `docker`, `podman`, `finch`, `nerdctl` and `buildah`".to_owned()),
            ),
        },
        _ => match reference::Reference::parse(value) {
            Ok(_) => return Ok(()),
            Err(e) => (e.to_string(), e.hint().map(str::to_owned)),
        },
    };
    Err(match hint {
        Some(hint) => format!("{error}\nhint: {hint}"),
        None => error,
    })
}

/// The first tokens of an item, to point an error at without underlining all of it.
fn first_tokens(item: &TokenStream2) -> TokenStream2 {
    item.clone().into_iter().take(2).collect()
}

/// Every error found, reported together.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn take<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|e| self.push(e)).ok()
    }

    fn finish(&mut self) -> syn::Result<()> {
        match self.0.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
