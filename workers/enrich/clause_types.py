"""CUAD clause categories and a keyword-scoring classifier for contract clauses.

Each category is a handful of weighted regular expressions over general legal language (the way
contracts everywhere say "governed by the laws of", "shall automatically renew", "right of first
refusal"), plus a pattern for the clause's own heading. A clause gets every category whose score
reaches 1.0: one strong phrase, a heading and a weak phrase, or several weak phrases. Nothing here
knows any particular contract.

The categories, their names and order are :data:`sleepd.cuad.CLAUSE_CATEGORIES`: there is one rule
here for each of them, and no other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sleepd.cuad import CLAUSE_CATEGORIES

__all__ = ["CATEGORIES", "EARLY_CHARS", "Category", "classify"]

#: preamble categories (parties, dates of the agreement) only count this far into a contract
EARLY_CHARS = 4000
_F = re.I | re.S


@dataclass(frozen=True)
class Category:
    """One CUAD category: weighted phrase patterns, a heading pattern, and where it may occur."""

    name: str
    #: lower-case stems one of which every phrase needs: a cheap test before any pattern runs
    gate: tuple[str, ...]
    phrases: tuple[tuple[re.Pattern[str], float], ...]
    heading: re.Pattern[str] | None = None
    #: a phrase that, when present, vetoes the category (e.g. "breach" for termination for convenience)
    unless: re.Pattern[str] | None = None
    #: only clauses starting within EARLY_CHARS of the start (the preamble) ...
    early: bool = False
    #: ... unless this matches (the signature block names the parties again)
    anywhere: re.Pattern[str] | None = None


def _cat(name: str, gate: list[str], phrases: list[tuple[str, float]], heading: str | None = None,
         unless: str | None = None, early: bool = False, anywhere: str | None = None) -> Category:
    return Category(
        name,
        tuple(gate),
        tuple((re.compile(p, _F), w) for p, w in phrases),
        re.compile(heading, re.I) if heading else None,
        re.compile(unless, _F) if unless else None,
        early,
        re.compile(anywhere) if anywhere else None,
    )


_DATE = (r"(?:(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4}"
         r"|\d{1,2}(?:st|nd|rd|th)?\s+(?:day\s+of\s+)?(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*,?"
         r"\s+(?:of\s+)?\d{4}|\d{1,2}/\d{1,2}/\d{2,4}|\[\*+\]\s*,?\s*\d{4}|_{3,}\s*,?\s*\d{4})")
_DUR = r"(?:\w+\s*\(\d+\)|\d+|one|two|three|four|five|six|seven|eight|nine|ten|twelve|thirty|sixty|ninety)"
_PERIOD = rf"{_DUR}[\s-]*(?:calendar\s+|business\s+)?(?:days?|months?|years?)"
_LICENSE = r"licen[cs]e"
_CARVE_OUT = (r"\b(?:notwithstanding|except\s+(?:for|as|that)|provided,?\s+(?:however|that)|"
              r"shall\s+not\s+(?:be\s+deemed\s+to\s+)?(?:prohibit|restrict|prevent|preclude|apply)|nothing\s+(?:in\s+this|herein|contained)\b.{0,80}?"
              r"(?:prohibit|restrict|prevent|preclude|limit))")
_RESTRICTION = (r"\b(?:exclusiv\w*|non[\s-]*compet\w*|compet(?:e|es|ing|itive|itors?|ition)|"
                r"solicit(?:s|ing|ation)?)\b")

_RULES: tuple[Category, ...] = (
    _cat("Parties", ['between', 'made', 'entered', 'executed', '"', '“', 'witness'], [
        (r"\b(?:by\s+and\s+)?between\b.{0,400}\band\b", 0.6),
        (r"\b(?:is|are)\s+(?:made|entered\s+into|executed)\b", 0.4),
        (r"\((?:the\s+|each\s+a\s+)?(?:hereinafter\s+(?:referred\s+to\s+as\s+)?)?[\"“][A-Z][^\"”]{1,40}[\"”]\)", 0.4),
    ], heading=r"^parties\b", early=True, anywhere=r"\bIN\s+WITNESS\s+WHEREOF\b"),
    _cat("Agreement Date", ['dated', 'made', 'entered', 'executed'], [
        (rf"\b(?:dated|made|entered\s+into|executed)\b.{{0,120}}?(?:as\s+of|on|this)\b.{{0,40}}?{_DATE}", 1.0),
        (rf"\bdated\s*:?\s*{_DATE}", 1.0),
    ], early=True),
    _cat("Effective Date", ['effective', 'commenc', 'start date'], [
        (r"\bEffective\s+Date\b", 0.3),
        (r"[\"“](?:Effective|Commencement)\s+Date[\"”]|\b(?:Effective|Commencement)\s+Date\W{0,3}\s+(?:means|shall\s+mean|"
         r"is|will\s+be)\b", 1.0),
        (rf"\beffective\s+(?:as\s+of|on|from)\b.{{0,40}}?{_DATE}", 1.0),
        (r"\b(?:shall|will)\s+(?:become|be)\s+effective\b", 0.8),
        (r"\b(?:commencement|start)\s+date\b", 0.6),
        (r"\b(?:shall|will)\s+commence\s+(?:on|as\s+of|upon)\b", 0.8),
    ], heading=r"^(?:effective\s+date|term)\b"),
    _cat("Expiration Date", ['expir', 'terminat', 'term', 'remain', 'end'], [
        (r"\b(?:shall|will)\s+(?:expire|terminate|end)\s+(?:on|at|upon)\b", 1.0),
        (rf"\bterm\s+of\s+(?:this|the)\s+agreement\b.{{0,200}}?(?:until|for\s+(?:a\s+period\s+of\s+)?{_PERIOD})", 1.0),
        (rf"\b(?:shall|will)\s+(?:continue|remain)\s+in\s+(?:full\s+)?(?:force|effect).{{0,80}}?"
         rf"(?:until|for\s+(?:a\s+(?:period|term)\s+of\s+)?{_PERIOD})", 1.0),
        (r"\binitial\s+term\b", 0.6),
        (r"\bterm\s+of\s+(?:this|the)\s+(?:agreement|contract)\s+(?:shall|will)\s+"
         r"(?:be|commence|begin|continue|run)\b", 0.8),
        (r"\b(?:commencing|beginning|starting)\b.{0,120}?\b(?:ending|terminating|expiring|until|through)\b", 0.6),
        (r"\bexpiration\s+date\b", 0.6),
    ], heading=r"^(?:term|duration|term\s+and\s+termination|term\s+of\s+(?:the\s+)?agreement|expiration)\b"),
    _cat("Renewal Term", ['renew', 'extend', 'extension', 'successive', 'additional', 'further', 'evergreen'], [
        (r"\b(?:shall|will)\s+(?:be\s+)?(?:automatically\s+)?(?:renew|extend)(?:ed)?\b", 0.7),
        (r"\bautomatic(?:ally)?\s+(?:be\s+)?(?:renew|extend)", 1.0),
        (r"\brenewal\s+(?:term|period)s?\b", 0.8),
        (rf"\b(?:successive|additional|further)\s+(?:{_DUR}[\s-]*)?(?:year|month|renewal)", 0.6),
        (r"\bevergreen\b", 1.0),
        (r"\boption\s+to\s+(?:renew|extend)\b", 1.0),
    ], heading=r"^(?:renewal|term)\b"),
    _cat("Notice Period To Terminate Renewal", ['renew', 'extend', 'notice'], [
        (r"\b(?:not|non)[\s-]*(?:to\s+)?renew", 0.9),
        (r"\b(?:renew|extend|renewal).{0,300}?\bunless\b.{0,200}?\bnotice\b", 1.0),
        (r"\bnotice\b.{0,150}?\b(?:prior\s+to|before)\s+the\s+(?:end|expiration|expiry)\s+of\s+the\s+"
         r"(?:then[\s-]+current|initial|renewal|current)", 1.0),
    ]),
    _cat("Governing Law", ['law'], [
        (r"\bgoverned\b.{0,120}?\blaws?\b", 1.0),
        (r"\b(?:construed|interpreted|enforced)\b.{0,80}?\b(?:in\s+accordance\s+with|under)\b.{0,40}?\blaws?\b", 1.0),
        (r"\bgoverning\s+law\b", 0.8),
        (r"\bchoice\s+of\s+law\b", 0.8),
    ], heading=r"^(?:governing\s+law|applicable\s+law|choice\s+of\s+law|law)\b"),
    _cat("Most Favored Nation", ['favo', 'lowest', 'best'], [
        (r"\bmost\s+favou?red\b", 1.0),
        (r"\b(?:no\s+less|not\s+less|at\s+least\s+as)\s+favou?rable\b", 0.8),
        (r"\b(?:more|most)\s+favou?rable\s+(?:terms|prices?|pricing|rates?)\b", 0.8),
        (r"\b(?:lowest|best)\s+(?:net\s+)?(?:price|pricing|rates?|terms)\b.{0,120}?\b(?:any|other)\s+"
         r"(?:other\s+)?(?:customer|distributor|licensee|third|purchaser|reseller)", 1.0),
    ]),
    _cat("Competitive Restriction Exception", ["exclusiv", "compet", "solicit"], [
        # a carve-out next to the restriction it carves out of, in either order
        (rf"{_CARVE_OUT}.{{0,300}}?{_RESTRICTION}|{_RESTRICTION}.{{0,300}}?{_CARVE_OUT}", 0.7),
        (r"\b(?:shall|will|may)\s+not\b|\bprohibit\w*|\brestrict\w*", 0.3),
        (r"\b(?:general\s+(?:solicitation|advertisement|advertising)|not\s+(?:specifically\s+)?(?:directed|targeted))",
         0.6),
        (r"\b(?:passive\s+investment|less\s+than\s+(?:\w+\s+\()?\d+\)?\s*(?:%|percent)\s+of\s+the\s+outstanding)",
         0.6),
    ]),
    _cat("Non-Compete", ['compet', 'engage', 'participate', 'similar', 'substitut'], [
        (r"\bnon[\s-]*compet\w*", 1.0),
        (r"\b(?:shall|will|agrees?\s+(?:that\s+it\s+will|to))\s+not\b.{0,200}?\b(?:compet\w*|competitive|"
         r"competing)\b", 0.8),
        (r"\bnot\s+(?:to\s+)?(?:directly\s+or\s+indirectly\s*,?\s*)?(?:engage|participate|compete)\b", 0.5),
        (r"\b(?:competing|competitive)\s+(?:products?|business|services?|activit)", 0.4),
        (r"\b(?:shall|will)\s+not\b.{0,120}?\b(?:manufacture|sell|distribute|market|promote|develop)\b"
         r".{0,120}?\b(?:similar|competi\w+|substitut\w+)", 0.6),
    ], heading=r"^(?:non[\s-]*compet|competi|restrictive\s+covenant)"),
    _cat("Exclusivity", ['exclusiv', 'appoint', 'grant', 'authori', 'requirements', 'needs'], [
        (r"\bexclusive\s+(?:right|distributor|distribution|licen[cs]e|licensee|supplier|provider|agent|"
         r"partner|basis|reseller|representative|dealer|manufacturer|territory|arrangement|relationship|"
         r"marketing|sales|rights?)", 1.0),
        (r"\bsole\s+and\s+exclusive\b", 0.8),
        (r"\bexclusively\b", 0.7),
        (r"\b(?:shall|will)\s+not\b.{0,150}?\b(?:appoint|grant|authori[sz]e)\b.{0,100}?\b(?:any\s+)?(?:other|third)",
         0.6),
        (r"\b(?:all|one\s+hundred\s+percent|100%)\s+of\s+(?:its|their)\s+(?:requirements|needs)", 1.0),
        (r"\bnon[\s-]*exclusive\b", -0.9),
    ], heading=r"^exclusiv"),
    _cat("No-Solicit Of Customers", ['solicit', 'entice', 'induce', 'divert'], [
        (r"\b(?:solicit|entice|induce|divert)\w*\b.{0,200}?\b(?:customers?|clients?|accounts?)\b", 0.8),
        (r"\bnon[\s-]*solicit", 0.4),
        (r"\b(?:shall|will)\s+not\b", 0.3),
    ], heading=r"^non[\s-]*solicit"),
    _cat("No-Solicit Of Employees", ['solicit', 'hire', 'employ', 'recruit', 'engage', 'induce'], [
        (r"\b(?:solicit|hire|employ|recruit|engage|induce)\w*\b.{0,200}?\b(?:employees?|personnel|staff|"
         r"consultants?|officers?)\b", 0.6),
        (r"\bnon[\s-]*solicit", 0.4),
        (r"\b(?:shall|will)\s+not\b|\bagrees?\s+not\s+to\b", 0.3),
        (r"\bemployment\s+(?:agreement|relationship)\s+with\b", -0.4),
    ], heading=r"^(?:non[\s-]*solicit|solicitation|hiring)"),
    _cat("Non-Disparagement", ['disparag', 'derogatory', 'defamatory', 'negative', 'critical', 'reputation',
                               'goodwill'], [
        (r"\bdisparag\w*", 1.0),
        (r"\b(?:derogatory|defamatory|negative|critical)\s+(?:statements?|comments?|remarks?)", 0.8),
        (r"\b(?:harm|damage|injure)\w*\s+(?:the\s+)?(?:reputation|goodwill)", 0.5),
    ]),
    _cat("Termination For Convenience", ['terminat', 'convenience', 'without cause', 'any reason'], [
        (r"\bfor\s+(?:its\s+)?convenience\b", 1.0),
        (r"\bwithout\s+cause\b", 1.0),
        (r"\bfor\s+any\s+(?:or\s+no\s+)?reason\b", 0.8),
        (r"\bat\s+any\s+time\b.{0,150}?\bterminat\w*|\bterminat\w*\b.{0,150}?\bat\s+any\s+time\b", 0.6),
        (rf"\bterminat\w*\b.{{0,150}}?\b(?:upon|with|by\s+giving|on)\s+(?:at\s+least\s+)?{_PERIOD}'?\s*"
         r"(?:prior\s+|advance\s+)?(?:written\s+)?notice", 0.5),
        (r"\bbreach|\bdefault|\binsolven|\bbankrupt", -0.5),
    ]),
    _cat("Rofr/Rofo/Rofn", ['first', 'right to', 'option to', 'before'], [
        (r"\bright\s+of\s+first\s+(?:refusal|offer|negotiation)", 1.0),
        (r"\bfirst\s+right\s+(?:of|to)\s+(?:refusal|negotiat\w*|offer|purchase|acquire)", 1.0),
        (r"\b(?:right|option)\s+to\s+(?:match|purchase|acquire)\b", 0.5),
        (r"\bbefore\s+(?:offering|granting|entering)\b.{0,120}?\bthird\s+part", 0.6),
    ]),
    _cat("Change Of Control", ['control', 'merger', 'consolidat', 'reorgani', 'substantially', 'fifty', '50'], [
        (r"\bchange\s+(?:of|in)\s+(?:the\s+)?control\b", 1.0),
        (r"\b(?:merger|consolidation|reorgani[sz]ation)\b", 0.4),
        (r"\b(?:sale|transfer|disposition)\s+of\s+(?:all\s+or\s+)?substantially\s+all\b", 0.6),
        (r"\b(?:fifty|50)\s*(?:percent|%)\b.{0,80}?\b(?:voting|ownership|equity|shares|stock)", 0.6),
        (r"\b(?:acquires?|acquired|acquisition)\b.{0,60}?\bcontrol", 0.6),
    ], heading=r"^change\s+(?:of|in)\s+control"),
    _cat("Anti-Assignment", ['assign'], [
        (r"\b(?:shall|will|may)\s+not\b.{0,60}?\bassign", 0.8),
        (r"\bassign\w*\b.{0,200}?\b(?:prior\s+)?(?:written\s+)?consent\b", 0.8),
        (r"\bno\s+(?:party|assignment)\b.{0,100}?\bassign", 0.8),
        (r"\bnon[\s-]*assignab|\bnot\s+(?:be\s+)?assignable\b", 1.0),
        (r"\bassignment\b", 0.3),
    ], heading=r"^(?:assignment|assignability|successors\s+and\s+assigns|transfer)"),
    _cat("Revenue/Profit Sharing", ['royalt', 'percent', '%', 'revenue', 'profit', 'commission', 'share', 'split'], [
        (r"\broyalt(?:y|ies)\b", 0.7),
        (r"\b(?:percent|%)\s+(?:\([^)]*\)\s+)?of\s+(?:the\s+|all\s+|such\s+)?(?:net|gross|total)?\s*"
         r"(?:sales|revenues?|receipts|profits?|proceeds|income|margin|fees|amounts?\s+received)", 1.0),
        (r"\b(?:revenue|profit)[\s-]*shar", 1.0),
        (r"\bcommissions?\b.{0,80}?(?:percent|%)", 0.8),
        (r"\b(?:share|split)\b.{0,60}?\b(?:revenues?|profits?|proceeds)\b", 0.7),
    ], heading=r"^(?:royalt|revenue|profit|commission|compensation)"),
    _cat("Price Restrictions", ['pric'], [
        (r"\b(?:shall|will|may)\s+not\s+(?:raise|increase|change|exceed)\b.{0,60}?\bpric", 1.0),
        (r"\bpric\w*\b.{0,80}?\b(?:shall|will|may)\s+not\s+(?:be\s+)?(?:increase|raise|exceed|change)", 1.0),
        (r"\bprice\s+increases?\b.{0,100}?\b(?:not\s+(?:to\s+)?exceed|limited|no\s+more\s+than|cap)", 1.0),
        (r"\b(?:fixed|firm)\s+(?:for|during)\b.{0,40}?\b(?:term|period|year)", 0.6),
    ]),
    _cat("Minimum Commitment", ['minimum', 'least', 'less than', 'take'], [
        (r"\bminimum\s+(?:annual\s+|monthly\s+|quarterly\s+)?(?:purchase|order|quantit|volume|commitment|sales|"
         r"royalt|fee|revenue|payment|requirement|guarantee|amount|number)", 1.0),
        (r"\b(?:purchase|order|buy|sell|pay)\b.{0,60}?\b(?:at\s+least|not\s+less\s+than|no\s+less\s+than|a\s+minimum\s+of)",
         0.8),
        (r"\b(?:at\s+least|not\s+less\s+than|no\s+less\s+than)\b.{0,80}?\b(?:units|orders?|purchases?)\b", 0.6),
        (r"\btake[\s-]+or[\s-]+pay\b", 1.0),
    ], heading=r"^minimum"),
    _cat("Volume Restriction", ['exceed', 'excess', 'more than', 'maximum', 'max', 'additional', 'up to'], [
        (r"\b(?:exceed|in\s+excess\s+of|more\s+than)\b.{0,80}?\b(?:units|users|copies|seats|licenses|"
         r"transactions|volume|quantit\w*|installations|servers|impressions|subscribers|orders)", 0.7),
        (r"\b(?:maximum|max)\s+(?:number|quantit|volume|amount)", 0.7),
        (r"\b(?:additional|excess)\s+(?:fees?|charges?)\b", 0.4),
        (r"\bup\s+to\s+(?:a\s+maximum\s+of\s+)?[\d,]+\s+(?:units|users|copies|seats|licenses)", 0.6),
    ]),
    _cat("Ip Ownership Assignment", ['assign', 'transfer', 'convey', 'property', 'hire', 'own', 'vest'], [
        (r"\b(?:hereby\s+)?(?:assigns?|transfers?|conveys?)\b.{0,80}?\ball\s+(?:of\s+its\s+)?(?:right|rights)?,?\s*"
         r"title,?\s+and\s+interest", 1.0),
        (r"\b(?:shall|will)\s+(?:be|become|remain)\s+the\s+(?:sole\s+and\s+)?(?:exclusive\s+)?property\s+of\b", 0.6),
        (r"\bworks?\s+made\s+for\s+hire\b", 1.0),
        (r"\b(?:shall|will)\s+(?:exclusively\s+)?(?:own|vest)\b.{0,120}?\b(?:intellectual\s+property|inventions?|"
         r"improvements?|patents?|copyrights?|work\s+product|deliverables?)", 0.8),
        (r"\bjointly\b", -0.6),
    ]),
    _cat("Joint Ip Ownership", ['joint', 'own'], [
        (r"\bjoint(?:ly)?\s+own", 1.0),
        (r"\bowned\s+jointly\b", 1.0),
        (r"\bjoint\s+(?:inventions?|intellectual\s+property|technology|patents?|developments?|work\s+product)", 1.0),
        (r"\bco[\s-]*own", 0.8),
    ]),
    _cat("License Grant", ['licen'], [
        (rf"\b(?:hereby\s+)?grants?\b.{{0,200}}?\b(?:sub)?{_LICENSE}\b", 1.0),
        (rf"\b{_LICENSE}d?\s+to\s+(?:use|make|sell|reproduce|distribute|manufacture|market|display|copy|practice)",
         0.8),
        (rf"\bgrant\s+of\s+(?:sub)?{_LICENSE}", 1.0),
    ], heading=rf"^(?:(?:sub)?{_LICENSE}|grant)"),
    _cat("Non-Transferable License", ['transfer', 'sublicens', 'sub-licens', 'assign'], [
        (r"\bnon[\s-]*transferable\b", 1.0),
        (r"\bnon[\s-]*sub[\s-]*licen[cs]able\b", 0.8),
        (rf"\bnot\s+(?:be\s+)?(?:transferable|assignable)\b.{{0,80}}?{_LICENSE}|{_LICENSE}.{{0,120}}?"
         r"\b(?:shall|will|may)\s+not\s+(?:be\s+)?(?:transfer|assign|sublicens)", 0.8),
        (rf"\bwithout\s+the\s+right\s+to\s+(?:sub{_LICENSE}|transfer|assign)", 0.8),
    ]),
    _cat("Affiliate License-Licensor", ['affiliate', 'subsidiar'], [
        (rf"\b(?:and|or)\s+(?:its|their)\s+(?:affiliates|subsidiaries)\b.{{0,80}}?\bgrant\w*\b.{{0,200}}?"
         rf"\b{_LICENSE}", 1.0),
        (rf"\b(?:on\s+behalf\s+of\s+itself\s+and\s+its\s+(?:affiliates|subsidiaries))\b.{{0,200}}?{_LICENSE}", 1.0),
        (rf"\b{_LICENSE}\b.{{0,200}}?\b(?:owned|controlled)\s+by\b.{{0,60}}?\b(?:affiliates|subsidiaries)", 0.8),
    ]),
    _cat("Affiliate License-Licensee", ['affiliate', 'subsidiar'], [
        (rf"\bgrants?\s+to\s+[A-Z][\w.&-]*(?:\s+[A-Z][\w.&-]*)*\s+and\s+(?:its|their)\s+(?:affiliates|subsidiaries)"
         rf"\b.{{0,200}}?{_LICENSE}", 1.0),
        (rf"\b{_LICENSE}\b.{{0,300}}?\b(?:to|by|for)\s+(?:its|their)\s+(?:affiliates|subsidiaries)\b", 0.6),
        (rf"\bsub{_LICENSE}\w*\b.{{0,100}}?\b(?:affiliates|subsidiaries)\b", 0.6),
    ]),
    _cat("Unlimited/All-You-Can-Eat-License", ['unlimited', 'limit', 'restriction', 'enterprise', 'site'], [
        (r"\bunlimited\s+(?:number|copies|users|use|access|quantit|right)", 1.0),
        (r"\bwithout\s+(?:any\s+)?(?:limit|limitation|restriction)\s+(?:as\s+to|on)\s+(?:the\s+)?(?:number|quantity)",
         1.0),
        (r"\benterprise[\s-]*wide\b|\bsite\s+licen", 0.8),
    ]),
    _cat("Irrevocable Or Perpetual License", ['irrevocable', 'perpetual'], [
        (rf"\b(?:irrevocable|perpetual)\b.{{0,150}}?{_LICENSE}", 1.0),
        (rf"{_LICENSE}\b.{{0,80}}?\b(?:irrevocable|perpetual)", 0.8),
        (r"\bfully[\s-]+paid[\s-]+up\b", 0.3),
    ]),
    _cat("Source Code Escrow", ['escrow'], [
        (r"\bescrow\b.{0,150}?\bsource\s+code|\bsource\s+code\b.{0,150}?\bescrow", 1.0),
        (r"\bescrow\s+(?:agent|agreement|account|materials?|deposit)", 0.8),
        (r"\bescrow\b", 0.4),
    ], heading=r"^(?:source\s+code\s+)?escrow"),
    _cat("Post-Termination Services", ['terminat', 'expir', 'transition', 'sell', 'wind'], [
        (r"\b(?:after|following|upon|survive)\b.{0,40}?\b(?:termination|expiration|expiry)\b.{0,250}?"
         r"\b(?:continue\s+to\s+(?:provide|supply|sell|support|service|perform|purchase)|transition\w*|"
         r"wind[\s-]*down|sell[\s-]*off|dispose\s+of|(?:fill|fulfil+|complete|honou?r)\s+(?:any\s+|all\s+)?"
         r"(?:outstanding|pending|existing|accepted)|purchase\s+(?:the\s+|all\s+|any\s+)?(?:remaining\s+)?"
         r"(?:inventory|stock)|return\s+(?:of\s+|all\s+|to\b))", 1.0),
        (r"\btransition\s+(?:services|period|assistance)", 1.0),
        (r"\bsell[\s-]*off\s+period\b", 1.0),
        (r"\b(?:termination|expiration)\s+assistance\b", 1.0),
    ], heading=r"^(?:effect\s+of\s+termination|consequences\s+of\s+termination|post[\s-]*termination|transition)"),
    _cat("Audit Rights", ['audit', 'inspect', 'examin', 'books', 'records'], [
        (r"\baudit\w*\b", 0.7),
        (r"\b(?:inspect|examine|examination|inspection)\b.{0,80}?\b(?:books|records|accounts|facilit|premises)", 0.8),
        (r"\bbooks\s+(?:and|of)\s+(?:records|account)", 0.5),
        (r"\bkeep\b.{0,40}?\b(?:accurate|complete)\b.{0,40}?\brecords\b", 0.4),
    ], heading=r"^(?:audit|records|inspection|books)"),
    _cat("Uncapped Liability", ['apply', 'limit', 'except', 'excluding', 'other than', 'unlimited'], [
        (r"\b(?:limitations?|exclusions?|caps?)\b.{0,80}?\b(?:shall|will)\s+not\s+apply\b", 1.0),
        (r"\b(?:shall|will)\s+not\s+(?:apply\s+to|limit)\b.{0,200}?\b(?:indemnif\w*|gross\s+negligence|willful|"
         r"wilful|fraud|confidential\w*|infringement|death|bodily\s+injury)", 1.0),
        (r"\b(?:except|excluding|other\s+than)\s+(?:for\s+)?(?:a\s+party's\s+|its\s+)?(?:breach|liability|"
         r"obligations?|indemnif\w*|damages|claims)\b.{0,200}?\b(?:indemnif\w*|confidential\w*|gross\s+negligence|"
         r"willful|wilful)", 0.6),
        (r"\bunlimited\s+liability\b|\bliability\b.{0,40}?\bunlimited\b", 1.0),
        # "except for breaches of Section 9, in no event shall either party be liable ...": a carve-out
        (r"\bexcept\b.{0,250}?\b(?:in\s+no\s+event|neither\s+party\s+(?:shall|will)\s+be\s+liable|"
         r"(?:shall|will)\s+not\s+be\s+liable)", 1.0),
    ]),
    _cat("Cap On Liability", ['liab', 'exceed', 'limitation'], [
        (r"\b(?:total|aggregate|maximum|cumulative|entire)\s+liability\b", 0.8),
        (r"\bliab\w*\b.{0,150}?\b(?:shall|will)\s+not\s+exceed\b|\bin\s+no\s+event\b.{0,200}?\bexceed", 1.0),
        (r"\bin\s+no\s+event\b.{0,100}?\bliable\b.{0,200}?\b(?:indirect|consequential|special|incidental|punitive|"
         r"exemplary|lost\s+profits)", 1.0),
        (r"\b(?:not\s+be\s+liable|no\s+liability)\b.{0,200}?\b(?:indirect|consequential|special|incidental|punitive|"
         r"lost\s+profits)", 0.9),
        (r"\blimitation\s+(?:of|on)\s+liability\b", 0.6),
        (r"\bliability\b.{0,80}?\blimited\s+to\b", 0.9),
    ], heading=r"^(?:limitation\s+(?:of|on)\s+liability|liability|limitations?|damages)"),
    _cat("Liquidated Damages", ['liquidated', 'fee', 'charge', 'payment', 'penalt'], [
        (r"\bliquidated\s+damages\b", 1.0),
        (r"\b(?:termination|cancellation|break[\s-]*up|early\s+termination)\s+(?:fee|charge|payment|penalty)", 0.9),
        (r"\bpenalt(?:y|ies)\b", 0.4),
        (r"\bnot\s+(?:as\s+)?a\s+penalty\b", 0.6),
    ]),
    _cat("Warranty Duration", ['warrant'], [
        (rf"\bwarrant\w*\b.{{0,200}}?\b(?:for\s+(?:a\s+period\s+of\s+)?|within\s+|period\s+of\s+){_PERIOD}", 1.0),
        (r"\bwarranty\s+period\b", 1.0),
        (rf"\b{_PERIOD}\b.{{0,80}}?\b(?:after|from|following)\s+(?:the\s+)?(?:date\s+of\s+)?(?:delivery|shipment|"
         rf"installation|acceptance)\b.{{0,150}}?\bwarrant", 0.8),
    ], heading=r"^warrant"),
    _cat("Insurance", ['insur', 'coverage'], [
        (r"\binsurance\b", 0.8),
        (r"\binsured\b|\binsurer\b|\bpolicy\s+limits?\b", 0.5),
        (r"\b(?:general|product)s?\s+liability\b.{0,80}?\bcoverage\b|\bcoverage\b", 0.3),
    ], heading=r"^insurance"),
    _cat("Covenant Not To Sue", ['sue', 'contest', 'challenge', 'dispute', 'oppose', 'attack', 'action', 'claim',
                                 'suit', 'proceeding'], [
        (r"\bcovenants?\s+not\s+to\s+sue\b", 1.0),
        (r"\b(?:shall|will)\s+not\b.{0,120}?\b(?:contest|challenge|dispute|oppose|attack)\w*\b.{0,120}?"
         r"\b(?:validity|ownership|enforceability|rights?\s+of|title)", 1.0),
        (r"\b(?:shall|will)\s+not\b.{0,60}?\b(?:sue|bring\s+(?:any\s+)?(?:action|claim|suit|proceeding))\b", 0.8),
        (r"\bagrees?\s+not\s+to\s+(?:sue|contest|challenge)", 1.0),
    ]),
    _cat("Third Party Beneficiary", ['beneficiar', 'confer', 'benefit', 'give', 'create'], [
        (r"\bthird[\s-]*party\s+beneficiar", 1.0),
        (r"\bintended\s+(?:third[\s-]*party\s+)?beneficiar", 1.0),
        (r"\bnothing\b.{0,120}?\b(?:confer|give|create)\w*\b.{0,120}?\b(?:any\s+)?(?:person|entity|third)", 0.8),
        (r"\bfor\s+the\s+(?:sole\s+|exclusive\s+)?benefit\s+of\b.{0,120}?\bparties", 0.6),
    ], heading=r"^(?:no\s+)?third[\s-]*part"),
)

_BY_NAME = {rule.name: rule for rule in _RULES}
if _BY_NAME.keys() != CLAUSE_CATEGORIES.keys() or len(_BY_NAME) != len(_RULES):
    raise RuntimeError("clause rules must match sleepd.cuad.CLAUSE_CATEGORIES one to one: "
                       f"{sorted(_BY_NAME.keys() ^ CLAUSE_CATEGORIES.keys())}")
#: one rule per CUAD category, in the taxonomy's order
CATEGORIES: tuple[Category, ...] = tuple(_BY_NAME[name] for name in CLAUSE_CATEGORIES)

def _heading_matches(category: Category, heading: str) -> bool:
    return category.heading is not None and bool(category.heading.search(heading.strip(" .:-\t")))


def classify(text: str, heading: str = "", start: int = 0) -> list[str]:
    """CUAD categories of one clause, in :data:`CATEGORIES` order.

    ``heading`` is the clause's own heading (without numbering), ``start`` its character offset in
    the contract: preamble categories only count within :data:`EARLY_CHARS` of the start.
    """
    found = []
    lower = text.lower()
    for category in CATEGORIES:
        if category.early and start > EARLY_CHARS:
            if category.anywhere is not None and category.anywhere.search(text):
                found.append(category.name)
            continue
        if not any(stem in lower for stem in category.gate) and not _heading_matches(category, heading):
            continue
        if category.unless is not None and category.unless.search(text):
            continue
        score = sum(weight for pattern, weight in category.phrases if pattern.search(text))
        if _heading_matches(category, heading):
            score += 0.5
        if score >= 1.0:
            found.append(category.name)
    return found
