// Over 800 lines on purpose: a proc-macro crate has one root, and the
// parsing and expansion of `#[grain_methods]` read best together.
//! # actor-core-macros: grain interfaces from an impl block
//!
//! `#[grain_methods]` is shorthand for what a grain author otherwise writes
//! by hand with `actor-core`: one [`Message`] type per method, its
//! [`Handler`] or [`SharedHandler`] impl, the [`GrainMethods`] impl that
//! lists the messages for serialized calls, and a typed reference
//! (`{Type}Ref`, an extension trait of `GrainRef<Type>`) whose async
//! methods read like the grain's own, as Orleans grain interfaces do. It expands only to `actor-core`'s public
//! API, so anything it generates can be written out by hand instead, one
//! message at a time.
//!
//! Use it through `actor-core`, which re-exports it as
//! `actor_core::grain_methods`; the expansion names `::actor_core::...`, so
//! the crate must depend on `actor-core` under that name. Users need no
//! serde dependency of their own: the messages derive through
//! `actor_core::__private::serde`.
//!
//! ```ignore
//! use actor_core::prelude::*;
//! use actor_core::grain_methods;
//!
//! #[derive(Default)]
//! pub struct Counter { value: u64 }
//!
//! impl Grain for Counter {
//!     const TYPE_NAME: &'static str = "counter";
//! }
//!
//! #[grain_methods] // also lists the methods: other silos and clients reach them
//! impl Counter {
//!     /// Adds `n` and returns the total.
//!     pub async fn add(&mut self, n: u64) -> u64 {
//!         self.value += n;
//!         self.value
//!     }
//!
//!     /// The total; interleaves with other read-only calls.
//!     #[read_only]
//!     pub async fn get(&self) -> u64 {
//!         self.value
//!     }
//!
//!     /// Adds one; the caller does not wait.
//!     #[one_way]
//!     pub async fn bump(&mut self) {
//!         self.value += 1;
//!     }
//!
//!     /// Starts again from zero, then asks to be collected when idle.
//!     pub async fn reset(&mut self, ctx: &GrainContext<Self>) {
//!         self.value = 0;
//!         ctx.deactivate_on_idle();
//!     }
//! }
//!
//! # async fn run() -> actor_core::Result<()> {
//! let silo = Silo::builder().grain::<Counter>().start().await?;
//! let counter = silo.get_grain::<Counter>("visits"); // GrainRef<Counter>
//! assert_eq!(counter.add(2).await?, 2);              // via CounterRef, generated
//! counter.bump()?;                                   // one-way: not awaited
//! assert_eq!(counter.get().await?, 3);
//! # Ok(())
//! # }
//! ```
//!
//! ## What it generates
//!
//! For each `async fn` of the block taking `&self` or `&mut self` (a *grain
//! method*), say `Counter::add(&mut self, n: u64) -> u64`:
//!
//! - `pub struct CounterAdd { pub n: u64 }`: the message, named type name +
//!   method name in PascalCase, with the method's visibility, one field per
//!   parameter (a `&GrainContext<Self>` parameter is not one: the runtime
//!   passes the turn's context), deriving serde's `Serialize` and
//!   `Deserialize`;
//! - `impl Message for CounterAdd` with `type Reply = u64` (`()` when the
//!   method returns nothing) and `const NAME = "add"`, the method name;
//! - for a `&mut self` method `impl Handler<CounterAdd> for Counter` (an
//!   exclusive turn); for a `&self` method `impl SharedHandler<..>` with
//!   `INTERLEAVE` set by the method's attribute: `#[read_only]` gives
//!   `Interleave::ReadOnly`, `#[always_interleave]` `Interleave::Always`,
//!   none `Interleave::Never`. The handler calls the method.
//!
//! and, once per block:
//!
//! - `impl GrainMethods for Counter`, whose `register` adds every message
//!   to the grain's `Methods`, so that serialized calls (other silos,
//!   clients) dispatch by name: a silo registers only grain types that
//!   implement `GrainMethods`, so the listing cannot be forgotten;
//! - `pub trait CounterRef`, implemented for `GrainRef<Counter>`, with one
//!   method per grain method, same name, same parameters (less the
//!   context), same doc comment: `fn add(&self, n: u64) -> impl Future<Output
//!   = actor_core::Result<u64>> + Send`, which asks the grain. A method
//!   marked `#[one_way]` (it must return nothing) becomes `fn bump(&self) ->
//!   Result<(), actor_core::SendError<CounterBump>>`, which tells: the call
//!   is queued, not awaited; an undelivered one comes back in the error.
//!   Bring the trait into scope (`use crate::CounterRef;`) to call them.
//!
//! The trait is `pub` when a grain method is, and otherwise takes the grain
//! methods' visibility.
//!
//! ## Transactional methods
//!
//! `#[transaction(option)]` on a grain method (option: `create`, `join`,
//! `create_or_join`, `supported`, `suppress` or `not_allowed`, Orleans'
//! `TransactionOption`s) makes it part of actor-tx's transactions. The
//! expansion names `::actor_tx`, so the crate must depend on `actor-tx`:
//! the message's reply becomes `actor_tx::TxReply<R>`, the handler runs
//! the method through `actor_tx::serve(TransactionOption::.., "name",
//! ctx.silo(), async { .. })`, and the reference's method returns
//! `actor_tx::Result<R>` through `actor_tx::call(grain_ref.ask(msg))`,
//! which carries the caller's transaction out and its participants back.
//! A `#[one_way]` method cannot be transactional.
//!
//! ## Handlers written by hand
//!
//! A grain may also answer messages whose handlers are written outside the
//! block (a message another crate defines, such as a reminder tick). Name
//! them in the attribute, so that `GrainMethods` lists them too:
//!
//! ```ignore
//! #[grain_methods(also_handles(ReminderTick))]
//! impl Outbox {
//!     pub async fn append(&mut self, messages: Vec<Message>) -> usize { .. }
//! }
//!
//! impl Handler<ReminderTick> for Outbox { .. }
//! ```
//!
//! Each becomes `methods.add::<ReminderTick, _>()` in `register`; naming a
//! message the grain does not handle is a compile error, and a handler left
//! unnamed answers local calls only (serialized ones fail with
//! `UnknownMethod`). A type takes one `#[grain_methods]` block (a second
//! would implement `GrainMethods` and `{Type}Ref` again, which does not
//! compile); a grain without one implements `GrainMethods` by hand.
//!
//! Methods that are not `async` are left alone, so helpers can sit in the
//! same block. Every `async fn` in the block must take `&self` or `&mut
//! self`, must not be generic, and must name each parameter with a plain
//! identifier; parameters and replies are owned, serializable types since
//! they travel in messages.
//!
//! [`Message`]: https://docs.rs/actor-core/latest/actor_core/trait.Message.html
//! [`Handler`]: https://docs.rs/actor-core/latest/actor_core/trait.Handler.html
//! [`SharedHandler`]: https://docs.rs/actor-core/latest/actor_core/trait.SharedHandler.html
//! [`GrainMethods`]: https://docs.rs/actor-core/latest/actor_core/trait.GrainMethods.html

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::Parse;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, Pat, ReturnType, Type, Visibility,
};

/// Turns the `async fn`s of a grain's inherent impl block into grain
/// methods: a message type and handler per method, the grain's
/// `GrainMethods` impl listing them (so a silo dispatches serialized calls
/// to them), and a `{Type}Ref` extension trait of `GrainRef<Type>` with
/// one async method per grain method.
///
/// Mark a `&self` method `#[read_only]` (interleaves with other read-only
/// calls) or `#[always_interleave]` (interleaves with every shared call),
/// and a method returning nothing `#[one_way]` (its reference method sends
/// without waiting). `#[transaction(create)]` (or `join`, `create_or_join`,
/// `supported`, `suppress`, `not_allowed`) makes a method transactional
/// (actor-tx). `#[grain_methods(also_handles(Msg, ..))]` lists
/// messages whose handlers are written by hand outside the block. See the
/// crate documentation for the full expansion.
///
/// ```ignore
/// #[grain_methods]
/// impl Counter {
///     /// Adds `n` and returns the total.
///     pub async fn add(&mut self, n: u64) -> u64 { self.value += n; self.value }
///     #[read_only]
///     pub async fn get(&self) -> u64 { self.value }
/// }
/// // let total = silo.get_grain::<Counter>("k").add(2).await?;
/// ```
#[proc_macro_attribute]
pub fn grain_methods(attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr = TokenStream2::from(attr);
    let block = syn::parse_macro_input!(item as ItemImpl);
    expand(attr, block).into()
}

const HELPERS: [&str; 4] = ["read_only", "always_interleave", "one_way", "transaction"];

/// The arguments of `#[transaction(..)]` and the `actor_tx::TransactionOption`
/// variant each stands for.
const TX_OPTIONS: [(&str, &str); 6] = [
    ("create", "Create"),
    ("join", "Join"),
    ("create_or_join", "CreateOrJoin"),
    ("supported", "Supported"),
    ("suppress", "Suppress"),
    ("not_allowed", "NotAllowed"),
];

/// Names `GrainRef` (or `Clone`) already answers to: a trait method with
/// one of them could not be called with method syntax.
const TAKEN: [&str; 5] = ["ask", "tell", "id", "with_timeout", "clone"];

fn expand(attr: TokenStream2, mut block: ItemImpl) -> TokenStream2 {
    let mut errors = Errors::default();
    let also_handles = match parse_args(attr) {
        Ok(types) => types,
        Err(e) => {
            errors.push(e);
            Vec::new()
        }
    };

    let header = check_block(&block);
    let mut methods = Vec::new();
    for item in &mut block.items {
        let ImplItem::Fn(f) = item else { continue };
        let helpers = take_helpers(f, &mut errors);
        if f.sig.asyncness.is_none() {
            // Not a grain method: a helper attribute on it is a mistake.
            for (name, attr) in helpers.all() {
                errors.push(syn::Error::new_spanned(
                    attr,
                    format!(
                        "`#[{name}]` marks a grain method, and `{}` is not one: grain methods are `async fn`s taking `&self` or `&mut self`",
                        f.sig.ident
                    ),
                ));
            }
            continue;
        }
        match GrainMethod::parse(f, helpers) {
            Ok(m) => methods.push(m),
            Err(e) => errors.push(e),
        }
    }

    let generated = match header {
        Ok((self_ty, type_ident)) => generate(&self_ty, &type_ident, &methods, &also_handles),
        Err(e) => {
            errors.push(e);
            TokenStream2::new()
        }
    };
    let errors = errors.into_compile_errors();
    quote! {
        #block
        #generated
        #errors
    }
}

/// The attribute's arguments: nothing, or `also_handles(Msg, ..)`, messages
/// whose handlers are written by hand outside the block.
fn parse_args(attr: TokenStream2) -> syn::Result<Vec<Type>> {
    let mut types = Vec::new();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("also_handles") {
            let content;
            syn::parenthesized!(content in meta.input);
            types.extend(content.parse_terminated(Type::parse, syn::Token![,])?);
            Ok(())
        } else {
            Err(meta.error(
                "`#[grain_methods]` takes one optional argument, `also_handles(Message, ..)`: the messages this grain answers with handlers written outside the block",
            ))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(types)
}

/// The grain type of an inherent, non-generic impl block, and the name that
/// generated items start with.
fn check_block(block: &ItemImpl) -> syn::Result<(TokenStream2, Ident)> {
    if let Some((_, path, _)) = &block.trait_ {
        return Err(syn::Error::new_spanned(
            path,
            "`#[grain_methods]` goes on an inherent impl block of a grain type (`impl MyGrain { .. }`), not on a trait impl",
        ));
    }
    if !block.generics.params.is_empty() || block.generics.where_clause.is_some() {
        return Err(syn::Error::new_spanned(
            &block.generics,
            "generic grain types are not supported by `#[grain_methods]`: write the messages and handlers by hand",
        ));
    }
    let ident = match &*block.self_ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.clone()),
        _ => None,
    };
    let ident = ident.ok_or_else(|| {
        syn::Error::new_spanned(
            &block.self_ty,
            "`#[grain_methods]` expects a grain type named by a path (`impl MyGrain { .. }`)",
        )
    })?;
    Ok((block.self_ty.to_token_stream(), ident.unraw()))
}

/// The helper attributes found (and removed) on one method.
#[derive(Default)]
struct Helpers {
    read_only: Option<Attribute>,
    always_interleave: Option<Attribute>,
    one_way: Option<Attribute>,
    /// `#[transaction(option)]`: the attribute and the option's variant.
    transaction: Option<(Attribute, Ident)>,
}

impl Helpers {
    fn all(&self) -> impl Iterator<Item = (&'static str, &Attribute)> {
        [
            ("read_only", &self.read_only),
            ("always_interleave", &self.always_interleave),
            ("one_way", &self.one_way),
        ]
        .into_iter()
        .filter_map(|(name, a)| a.as_ref().map(|a| (name, a)))
        .chain(self.transaction.as_ref().map(|(a, _)| ("transaction", a)))
    }
}

fn take_helpers(f: &mut ImplItemFn, errors: &mut Errors) -> Helpers {
    let mut helpers = Helpers::default();
    let mut kept = Vec::with_capacity(f.attrs.len());
    for attr in std::mem::take(&mut f.attrs) {
        let Some(name) = HELPERS.iter().find(|h| attr.path().is_ident(h)) else {
            kept.push(attr);
            continue;
        };
        if *name == "transaction" {
            match parse_transaction(&attr) {
                Ok(variant) => {
                    if helpers.transaction.is_some() {
                        errors.push(syn::Error::new_spanned(&attr, "duplicate `#[transaction]`"));
                    }
                    helpers.transaction = Some((attr, variant));
                }
                Err(e) => errors.push(e),
            }
            continue;
        }
        if attr.meta.require_path_only().is_err() {
            errors.push(syn::Error::new_spanned(
                &attr.meta,
                format!("`#[{name}]` takes no arguments"),
            ));
        }
        let slot = match *name {
            "read_only" => &mut helpers.read_only,
            "always_interleave" => &mut helpers.always_interleave,
            _ => &mut helpers.one_way,
        };
        if slot.is_some() {
            errors.push(syn::Error::new_spanned(
                &attr,
                format!("duplicate `#[{name}]`"),
            ));
        }
        *slot = Some(attr);
    }
    f.attrs = kept;
    helpers
}

/// The option of `#[transaction(option)]`, as its `TransactionOption` variant.
fn parse_transaction(attr: &Attribute) -> syn::Result<Ident> {
    let names = TX_OPTIONS
        .iter()
        .map(|(n, _)| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let wrong = || {
        syn::Error::new_spanned(
            &attr.meta,
            format!(
                "`#[transaction(..)]` takes one option: one of {names} (as Orleans' `TransactionOption`)"
            ),
        )
    };
    let arg: Ident = attr.parse_args().map_err(|_| wrong())?;
    TX_OPTIONS
        .iter()
        .find(|(n, _)| arg == n)
        .map(|(_, v)| Ident::new(v, arg.span()))
        .ok_or_else(wrong)
}

/// One `async fn` of the block, checked.
struct GrainMethod {
    ident: Ident,
    vis: Visibility,
    /// The method's `#[doc]` attributes.
    docs: Vec<Attribute>,
    /// The method's `#[cfg]` attributes, repeated on everything generated
    /// for it.
    cfgs: Vec<Attribute>,
    exclusive: bool,
    interleave: &'static str,
    one_way: bool,
    /// The `actor_tx::TransactionOption` variant of a transactional method.
    transaction: Option<Ident>,
    params: Vec<Param>,
    reply: Option<Type>,
}

enum Param {
    /// `&GrainContext<Self>`: passed by the runtime, not a message field.
    Context,
    Field {
        ident: Ident,
        ty: Box<Type>,
    },
}

impl GrainMethod {
    fn parse(f: &ImplItemFn, helpers: Helpers) -> syn::Result<Self> {
        let sig = &f.sig;
        let name = &sig.ident;
        let mut errors = Errors::default();

        let exclusive = match sig.receiver() {
            Some(r) => match &*r.ty {
                Type::Reference(t) => t.mutability.is_some(),
                _ => {
                    let how = match r.colon_token {
                        Some(_) => "a `self` that is not a reference",
                        None => "`self` by value",
                    };
                    return Err(syn::Error::new_spanned(
                        r,
                        format!(
                            "`{name}` takes {how}: only `&self` and `&mut self` methods can be grain methods"
                        ),
                    ));
                }
            },
            None => {
                return Err(syn::Error::new(
                    sig.paren_token.span.join(),
                    format!(
                        "`{name}` has no `self` parameter: only `&self` and `&mut self` methods can be grain methods (move other async functions to another impl block)"
                    ),
                ));
            }
        };
        if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
            errors.push(syn::Error::new_spanned(
                &sig.generics,
                format!(
                    "generic methods are not supported by `#[grain_methods]`: `{name}` becomes a message type, which cannot be generic"
                ),
            ));
        }
        if let Some(u) = &sig.unsafety {
            errors.push(syn::Error::new_spanned(
                u,
                "`unsafe` grain methods are not supported",
            ));
        }
        if let Some(abi) = &sig.abi {
            errors.push(syn::Error::new_spanned(
                abi,
                "`extern` grain methods are not supported",
            ));
        }
        if TAKEN.contains(&name.unraw().to_string().as_str()) {
            errors.push(syn::Error::new_spanned(
                name,
                format!(
                    "a grain method named `{name}` would be hidden by `GrainRef::{name}` on its typed reference: rename it"
                ),
            ));
        }

        let mut interleave = "Never";
        if let Some(a) = &helpers.read_only {
            interleave = "ReadOnly";
            if exclusive {
                errors.push(syn::Error::new_spanned(
                    a,
                    "`#[read_only]` applies to `&self` methods: a `&mut self` method runs in an exclusive turn, which never interleaves",
                ));
            }
        }
        if let Some(a) = &helpers.always_interleave {
            interleave = "Always";
            if exclusive {
                errors.push(syn::Error::new_spanned(
                    a,
                    "`#[always_interleave]` applies to `&self` methods: a `&mut self` method runs in an exclusive turn, which never interleaves",
                ));
            } else if helpers.read_only.is_some() {
                errors.push(syn::Error::new_spanned(
                    a,
                    "`#[read_only]` and `#[always_interleave]` exclude each other: keep one",
                ));
            }
        }

        let mut params = Vec::new();
        for arg in &sig.inputs {
            let FnArg::Typed(pt) = arg else { continue };
            if is_context(&pt.ty) {
                params.push(Param::Context);
                continue;
            }
            match &*pt.pat {
                Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => {
                    if let Err(e) = check_owned(&pt.ty, "parameter") {
                        errors.push(e);
                    }
                    params.push(Param::Field {
                        ident: p.ident.clone(),
                        ty: pt.ty.clone(),
                    });
                }
                pat => errors.push(syn::Error::new_spanned(
                    pat,
                    "grain method parameters must be plain identifiers (`name: Type`): each becomes a field of the method's message",
                )),
            }
        }

        let reply = match &sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) if is_unit(ty) => None,
            ReturnType::Type(_, ty) => {
                if let Err(e) = check_owned(ty, "return type") {
                    errors.push(e);
                }
                Some((**ty).clone())
            }
        };
        if let (Some(_), Some(ty)) = (&helpers.one_way, &reply) {
            errors.push(syn::Error::new_spanned(
                ty,
                format!(
                    "a `#[one_way]` method returns nothing, since its caller does not wait for a reply: remove the return type `{}` or the `#[one_way]` attribute",
                    ty.to_token_stream()
                ),
            ));
        }

        if let (Some(_), Some((a, _))) = (&helpers.one_way, &helpers.transaction) {
            errors.push(syn::Error::new_spanned(
                a,
                "a `#[one_way]` method cannot be transactional: its caller does not wait for the reply that brings the transaction's participants back; remove one of the attributes",
            ));
        }

        errors.finish()?;
        let attrs_named = |n: &str| {
            f.attrs
                .iter()
                .filter(|a| a.path().is_ident(n))
                .cloned()
                .collect::<Vec<_>>()
        };
        Ok(GrainMethod {
            ident: name.clone(),
            vis: f.vis.clone(),
            docs: attrs_named("doc"),
            cfgs: attrs_named("cfg"),
            exclusive,
            interleave,
            one_way: helpers.one_way.is_some(),
            transaction: helpers.transaction.map(|(_, v)| v),
            params,
            reply,
        })
    }

    fn fields(&self) -> impl Iterator<Item = (&Ident, &Type)> {
        self.params.iter().filter_map(|p| match p {
            Param::Context => None,
            Param::Field { ident, ty } => Some((ident, &**ty)),
        })
    }
}

fn is_unit(ty: &Type) -> bool {
    matches!(ty, Type::Tuple(t) if t.elems.is_empty())
}

/// `&GrainContext<..>`, however its path is written.
fn is_context(ty: &Type) -> bool {
    let Type::Reference(r) = ty else { return false };
    if r.mutability.is_some() {
        return false;
    }
    match &*r.elem {
        Type::Path(p) => p
            .path
            .segments
            .last()
            .is_some_and(|s| s.ident == "GrainContext"),
        _ => false,
    }
}

/// Message fields and replies are sent, and maybe serialized: no borrows,
/// and no `impl Trait` (which would make the method generic).
fn check_owned(ty: &Type, what: &str) -> syn::Result<()> {
    fn scan(tokens: TokenStream2, found: &mut Option<&'static str>) {
        let mut prev_tick = false;
        for tt in tokens {
            match &tt {
                TokenTree::Group(g) => scan(g.stream(), found),
                TokenTree::Ident(i) if i == "impl" => *found = found.or(Some("impl")),
                TokenTree::Ident(i) if prev_tick && *i != "static" => {
                    *found = found.or(Some("borrow"));
                }
                TokenTree::Punct(p) if p.as_char() == '&' => *found = found.or(Some("borrow")),
                _ => {}
            }
            prev_tick = matches!(&tt, TokenTree::Punct(p) if p.as_char() == '\'');
        }
    }
    let mut found = None;
    scan(ty.to_token_stream(), &mut found);
    match found {
        None => Ok(()),
        Some("impl") => Err(syn::Error::new_spanned(
            ty,
            format!(
                "`impl Trait` is not supported in a grain method's {what}: generic methods are not supported by `#[grain_methods]`; name a concrete type"
            ),
        )),
        Some(_) => Err(syn::Error::new_spanned(
            ty,
            format!(
                "a grain method's {what} must be an owned type, since it travels in a message (and may be serialized): use e.g. `String` for `&str`, `Vec<T>` for `&[T]`"
            ),
        )),
    }
}

/// `Self` means the grain type in the method's signature but something else
/// (the message, or `GrainRef<_>`) where the types are repeated.
fn replace_self(tokens: TokenStream2, self_ty: &TokenStream2) -> TokenStream2 {
    tokens
        .into_iter()
        .flat_map(|tt| -> Vec<TokenTree> {
            match tt {
                TokenTree::Ident(i) if i == "Self" => self_ty.clone().into_iter().collect(),
                TokenTree::Group(g) => {
                    let mut new =
                        proc_macro2::Group::new(g.delimiter(), replace_self(g.stream(), self_ty));
                    new.set_span(g.span());
                    vec![TokenTree::Group(new)]
                }
                tt => vec![tt],
            }
        })
        .collect()
}

fn pascal_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for part in name.split('_').filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    out
}

/// The visibility of the block's shared items: `pub` if any grain method is
/// `pub`, the methods' own if they agree, else `pub(crate)`.
fn widest_visibility(methods: &[GrainMethod]) -> TokenStream2 {
    let mut vis: Option<TokenStream2> = None;
    for m in methods {
        if matches!(m.vis, Visibility::Public(_)) {
            return quote!(pub);
        }
        let this = m.vis.to_token_stream();
        vis = match vis {
            None => Some(this),
            Some(v) if v.to_string() == this.to_string() => Some(v),
            Some(_) => Some(quote!(pub(crate))),
        };
    }
    vis.unwrap_or_default()
}

/// Whether an argument's type is written as `Vec<u8>` (also with the
/// `std::vec::` or `alloc::vec::` path).
fn is_byte_vec(ty: &TokenStream2) -> bool {
    let text: String = ty
        .to_string()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    matches!(
        text.trim_start_matches("::"),
        "Vec<u8>" | "std::vec::Vec<u8>" | "alloc::vec::Vec<u8>"
    )
}

fn generate(
    self_ty: &TokenStream2,
    type_ident: &Ident,
    methods: &[GrainMethod],
    also_handles: &[Type],
) -> TokenStream2 {
    let serde = quote!(::actor_core::__private::serde);
    let type_name = type_ident.to_string();
    let mut items = TokenStream2::new();
    let mut registrations = TokenStream2::new();
    let mut trait_decls = TokenStream2::new();
    let mut trait_impls = TokenStream2::new();

    for m in methods {
        let ident = &m.ident;
        let method = ident.unraw().to_string();
        let msg = format_ident!(
            "{}{}",
            type_ident,
            pascal_case(&method),
            span = ident.span()
        );
        let vis = &m.vis;
        let cfgs = &m.cfgs;
        let field_names: Vec<&Ident> = m.fields().map(|(i, _)| i).collect();
        let field_types: Vec<TokenStream2> = m
            .fields()
            .map(|(_, t)| replace_self(t.to_token_stream(), self_ty))
            .collect();
        let field_docs = field_names
            .iter()
            .map(|i| format!(" The `{}` argument.", i.unraw()));
        let reply = match &m.reply {
            Some(t) => replace_self(t.to_token_stream(), self_ty),
            None => quote!(()),
        };
        // A transactional method's reply also carries the participants it
        // added, back to the caller's transaction (actor-tx).
        let plain_reply = reply.clone();
        let reply = match &m.transaction {
            Some(_) => quote!(::actor_tx::TxReply<#reply>),
            None => reply,
        };
        let handle_output =
            (m.reply.is_some() || m.transaction.is_some()).then(|| quote!(-> #reply));

        // The message.
        // The method's own docs go on the reference's method only, so that
        // their examples are not tested twice.
        let msg_doc = format!(
            " The message of the grain method `{type_name}::{method}`, sent by `{type_name}Ref::{method}`."
        );
        // `Vec<u8>` arguments encode as one block of bytes (serde would
        // otherwise visit them byte by byte); bincode writes the same bytes
        // either way, so silos of both kinds still understand each other.
        let field_attrs = field_types.iter().map(|t| {
            if is_byte_vec(t) {
                quote!(#[serde(with = "::actor_core::__private::serde_bytes")])
            } else {
                quote!()
            }
        });
        let body = if field_names.is_empty() {
            quote!(;)
        } else {
            quote!({ #( #[doc = #field_docs] #field_attrs #vis #field_names: #field_types, )* })
        };
        items.extend(quote! {
            #(#cfgs)*
            #[doc = #msg_doc]
            #[derive(#serde::Serialize, #serde::Deserialize)]
            #[serde(crate = "::actor_core::__private::serde")]
            #vis struct #msg #body

            #(#cfgs)*
            impl ::actor_core::Message for #msg {
                type Reply = #reply;
                const NAME: &'static str = #method;
            }
        });

        // Its handler, which calls the method.
        let ctx = Ident::new("ctx", Span::mixed_site());
        let takes_ctx = m.params.iter().any(|p| matches!(p, Param::Context));
        let ctx_pat = if takes_ctx || m.transaction.is_some() {
            quote!(#ctx)
        } else {
            quote!(_)
        };
        let args = m.params.iter().map(|p| match p {
            Param::Context => quote!(#ctx),
            Param::Field { ident, .. } => quote!(#ident),
        });
        let call = quote_spanned!(ident.span()=> self.#ident(#(#args),*).await);
        let call = match &m.transaction {
            Some(option) => quote! {
                ::actor_tx::serve(
                    ::actor_tx::TransactionOption::#option,
                    #method,
                    ::actor_core::GrainContext::silo(#ctx),
                    async { #call },
                )
                .await
            },
            None => call,
        };
        let pattern = quote!(#msg { #(#field_names),* });
        let kind;
        items.extend(if m.exclusive {
            kind = quote!(::actor_core::kind::Exclusive);
            quote! {
                #(#cfgs)*
                impl ::actor_core::Handler<#msg> for #self_ty {
                    async fn handle(
                        &mut self,
                        #pattern: #msg,
                        #ctx_pat: &::actor_core::GrainContext<Self>,
                    ) #handle_output {
                        #call
                    }
                }
            }
        } else {
            kind = quote!(::actor_core::kind::Shared);
            let interleave = Ident::new(m.interleave, Span::call_site());
            quote! {
                #(#cfgs)*
                impl ::actor_core::SharedHandler<#msg> for #self_ty {
                    const INTERLEAVE: ::actor_core::Interleave = ::actor_core::Interleave::#interleave;
                    async fn handle(
                        &self,
                        #pattern: #msg,
                        #ctx_pat: &::actor_core::GrainContext<Self>,
                    ) #handle_output {
                        #call
                    }
                }
            }
        });
        registrations.extend(quote! {
            #(#cfgs)*
            methods.add::<#msg, #kind>();
        });

        // Its method on the typed reference.
        let docs = if m.docs.is_empty() {
            let doc = if m.one_way {
                format!(
                    " Sends `{type_name}::{method}` one-way: queued, not awaited; an error means it was not queued, and hands the message back."
                )
            } else {
                format!(" Calls `{type_name}::{method}` and waits for its reply.")
            };
            quote!(#[doc = #doc])
        } else {
            let docs = &m.docs;
            quote!(#(#docs)*)
        };
        // Spanned on the method, so that errors in the reference (say, a
        // reply that is not `Send`) point at it.
        let span = ident.span();
        let sig = if m.one_way {
            quote_spanned!(span=> fn #ident(&self #(, #field_names: #field_types)*) -> ::std::result::Result<(), ::actor_core::SendError<#msg>>)
        } else if m.transaction.is_some() {
            quote_spanned! {span=>
                fn #ident(&self #(, #field_names: #field_types)*)
                    -> impl ::std::future::Future<Output = ::actor_tx::Result<#plain_reply>>
                    + ::std::marker::Send
            }
        } else {
            quote_spanned! {span=>
                fn #ident(&self #(, #field_names: #field_types)*)
                    -> impl ::std::future::Future<Output = ::actor_core::Result<#reply>>
                    + ::std::marker::Send
            }
        };
        let send = if m.one_way { quote!(tell) } else { quote!(ask) };
        trait_decls.extend(quote! {
            #(#cfgs)*
            #docs
            #sig;
        });
        let body = match &m.transaction {
            Some(_) => quote!(::actor_tx::call(::actor_core::GrainRef::ask(self, #pattern))),
            None => quote!(::actor_core::GrainRef::#send(self, #pattern)),
        };
        trait_impls.extend(quote_spanned! {span=>
            #(#cfgs)*
            #sig {
                #body
            }
        });
    }

    // Messages handled outside the block; spanned on each, so that one
    // without a handler is reported where it is named.
    for ty in also_handles {
        registrations.extend(quote_spanned! {ty.span()=>
            methods.add::<#ty, _>();
        });
    }

    let vis = widest_visibility(methods);
    let ref_trait = format_ident!("{}Ref", type_ident);
    let trait_doc = format!(
        " Typed calls to a `{type_name}` grain: one method per grain method of `{type_name}`, implemented for `GrainRef<{type_name}>` (generated by `#[grain_methods]`)."
    );
    let unused = registrations.is_empty().then(|| quote!(let _ = methods;));
    quote! {
        #items

        impl ::actor_core::GrainMethods for #self_ty {
            fn register(methods: &mut ::actor_core::Methods<Self>) {
                #unused
                #registrations
            }
        }

        #[doc = #trait_doc]
        #vis trait #ref_trait {
            #trait_decls
        }

        impl #ref_trait for ::actor_core::GrainRef<#self_ty> {
            #trait_impls
        }
    }
}

/// Errors gathered so that one expansion reports all of them.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, e: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(e),
            None => self.0 = Some(e),
        }
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }

    fn into_compile_errors(self) -> TokenStream2 {
        self.0.map(|e| e.to_compile_error()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pascal_case_of_method_names() {
        assert_eq!(pascal_case("add"), "Add");
        assert_eq!(pascal_case("get_total"), "GetTotal");
        assert_eq!(pascal_case("_private__two"), "PrivateTwo");
        assert_eq!(pascal_case("v2_add"), "V2Add");
    }

    #[test]
    fn context_parameters_are_recognised() {
        let ctx: Type = syn::parse_quote!(&GrainContext<Self>);
        let long: Type = syn::parse_quote!(&::actor_core::GrainContext<Counter>);
        let mutable: Type = syn::parse_quote!(&mut GrainContext<Self>);
        let other: Type = syn::parse_quote!(&String);
        assert!(is_context(&ctx) && is_context(&long));
        assert!(!is_context(&mutable) && !is_context(&other));
    }

    #[test]
    fn borrowed_and_impl_types_are_refused() {
        let ok: [Type; 3] = [
            syn::parse_quote!(String),
            syn::parse_quote!(Vec<(u8, Option<Self>)>),
            syn::parse_quote!(std::borrow::Cow<'static, str>),
        ];
        for ty in &ok {
            assert!(check_owned(ty, "parameter").is_ok(), "{}", quote!(#ty));
        }
        let bad: [Type; 4] = [
            syn::parse_quote!(&str),
            syn::parse_quote!(Vec<&'static str>),
            syn::parse_quote!(std::borrow::Cow<'a, str>),
            syn::parse_quote!(impl Into<String>),
        ];
        for ty in &bad {
            assert!(check_owned(ty, "parameter").is_err(), "{}", quote!(#ty));
        }
    }

    #[test]
    fn self_is_replaced_everywhere() {
        let ty = quote!(crate::Counter);
        let out = replace_self(quote!(Result<Vec<Self>, (Self, u8)>), &ty);
        assert_eq!(
            out.to_string(),
            quote!(Result<Vec<crate::Counter>, (crate::Counter, u8)>).to_string()
        );
    }
}
