"""Synthetic receipt data shaped like the Datathon@IndoML 2024 files, so that the workflow and the
tests run without the real (non-redistributable) data.

The generator invents a catalogue (a supergroup → group → module tree of plausible English labels,
pseudo-word brands, some brands under several modules, the catch-all brand "receipt all", products
with sizes, 63 retailers with their own receipt styles) and then draws rows from it: a product by a
Zipf-like popularity, a retailer that carries it (5 % of rows an unrelated one), a receipt
description made from the product's full name (abbreviated brand and words, dropped vowels,
shorthand units, run-together words, per-retailer character mutations, cut at the retailer's
receipt width) and a price (lognormal around the module's mean, 2 % missing).

Everything is drawn from `random.Random(...).random()` alone (the one stream Python promises to keep
across versions) and from blake2b hashes, so that the same call gives byte-identical files.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prodcat import LEVELS
from prodcat.data.hierarchy import Hierarchy

CATCH_ALL_BRAND = "receipt all"
MIN_DESCRIPTION = 4
MAX_DESCRIPTION = 68
N_RETAILERS = 63
N_TEST_ONLY_RETAILERS = 3
UNRELATED_RETAILER_SHARE = 0.05
NEW_RETAILER_TEST_SHARE = 0.02
MISSING_PRICE_SHARE = 0.02
QUOTED_PRICE_SHARE = 0.10
FORMATS = ("parquet", "jsonl")
# Popularity by rank, 1 / (rank + offset) ** exponent: of modules overall, of brands within a module,
# of products within a brand's module. Steep enough that a 400-row sample still repeats most of its
# label paths; the many lines of leading brands keep products varied.
MODULE_ZIPF = 2.0
MODULE_OFFSET = 8  # flattens the head: the first dozen modules are about equally popular
BRAND_ZIPF = 2.0
PRODUCT_ZIPF = 0.3

# ---- the invented label tree ------------------------------------------------------------------
# supergroup → group → module → (product nouns, variant words, size set, mean price).
# A variant entry is a key of VARIANTS or a tuple of its own. The modules of GENERIC_GROUPS hold
# generic items only: their one brand is the catch-all, as in the real data.
VARIANTS = {
    "milk": ("whole", "semi skimmed", "skimmed", "organic", "lactose free", "filtered", "jersey"),
    "alt": ("original", "unsweetened", "barista", "organic", "chocolate", "light"),
    "fruit": (
        "strawberry",
        "raspberry",
        "peach",
        "mango",
        "blueberry",
        "cherry",
        "apricot",
        "lemon",
        "vanilla",
        "mixed berry",
    ),
    "dairy": ("mature", "mild", "extra mature", "reduced fat", "smoked", "garlic & herb", "original", "light"),
    "butter": ("salted", "unsalted", "lighter", "organic", "slightly salted", "british"),
    "eggs": ("free range", "organic", "large", "medium", "mixed weight", "barn"),
    "bread": ("white", "wholemeal", "seeded", "sourdough", "multigrain", "malted", "rye", "brown"),
    "cake": ("chocolate", "lemon", "carrot", "victoria", "coffee & walnut", "red velvet", "madeira", "cherry bakewell"),
    "pastry": ("all butter", "mini", "chocolate", "almond", "apple", "large"),
    "sweet": (
        "milk chocolate",
        "dark chocolate",
        "white chocolate",
        "caramel",
        "hazelnut",
        "mint",
        "orange",
        "toffee",
        "honeycomb",
        "cookie dough",
    ),
    "chew": ("fruit", "sour", "cola", "strawberry", "tropical", "spearmint", "peppermint", "cherry"),
    "savoury": (
        "ready salted",
        "salt & vinegar",
        "cheese & onion",
        "sour cream & chive",
        "smoky bacon",
        "paprika",
        "sweet chilli",
        "prawn cocktail",
        "sea salt",
    ),
    "nut": ("salted", "roasted", "honey roast", "unsalted", "chilli", "mixed"),
    "soft": ("original", "diet", "zero sugar", "cherry", "lemon & lime", "orange", "tropical", "raspberry", "vanilla"),
    "juice": (
        "orange",
        "apple",
        "pineapple",
        "cranberry",
        "tomato",
        "grapefruit",
        "mango & passion fruit",
        "smooth orange",
        "orange with bits",
    ),
    "water": ("still", "sparkling", "lightly sparkling", "lemon", "lime", "strawberry", "natural mineral"),
    "hot": (
        "original",
        "decaf",
        "gold",
        "rich roast",
        "breakfast",
        "earl grey",
        "green",
        "peppermint",
        "instant",
        "ground",
    ),
    "beer": ("premium", "pale", "golden", "amber", "session", "extra strong", "alcohol free", "craft", "export"),
    "wine": (
        "merlot",
        "shiraz",
        "cabernet sauvignon",
        "pinot grigio",
        "sauvignon blanc",
        "chardonnay",
        "rioja",
        "malbec",
        "rose",
        "tempranillo",
    ),
    "spirit": ("london dry", "pink", "blended", "single malt", "triple distilled", "spiced", "premium", "citrus"),
    "produce": (
        "braeburn",
        "gala",
        "conference",
        "organic",
        "british",
        "large",
        "baby",
        "red",
        "green",
        "sweet",
        "ripe",
        "easy peeler",
    ),
    "meat": (
        "british",
        "free range",
        "organic",
        "smoked",
        "unsmoked",
        "lean",
        "thick cut",
        "diced",
        "minced",
        "breaded",
    ),
    "fish": ("atlantic", "scottish", "skinless", "boneless", "smoked", "lightly dusted", "wild", "battered"),
    "meal": (
        "chicken tikka",
        "lasagne",
        "cottage pie",
        "macaroni cheese",
        "chilli con carne",
        "sweet & sour",
        "korma",
        "margherita",
        "pepperoni",
        "four cheese",
    ),
    "frozen": ("garden", "petit", "crinkle cut", "steam", "mixed", "country", "golden"),
    "ice": (
        "vanilla",
        "chocolate",
        "strawberry",
        "cookie dough",
        "salted caramel",
        "mint choc chip",
        "raspberry ripple",
        "neapolitan",
    ),
    "sauce": (
        "tomato",
        "bolognese",
        "tikka masala",
        "korma",
        "sweet chilli",
        "garlic",
        "barbecue",
        "pesto",
        "sweet & sour",
    ),
    "cereal": (
        "honey",
        "chocolate",
        "fruit & fibre",
        "bran",
        "golden",
        "multigrain",
        "oat",
        "apple & cinnamon",
        "original",
    ),
    "baking": ("plain", "self raising", "caster", "granulated", "icing", "strong white", "dark brown"),
    "clean": (
        "original",
        "lemon",
        "lavender",
        "ocean",
        "fresh linen",
        "sensitive",
        "antibacterial",
        "bio",
        "non bio",
        "spring",
    ),
    "paper": ("soft", "quilted", "ultra soft", "recycled", "strong", "white", "extra long"),
    "beauty": (
        "sensitive",
        "fresh",
        "moisturising",
        "men",
        "original",
        "coconut",
        "argan oil",
        "anti dandruff",
        "volume",
        "extra strength",
        "whitening",
        "cool mint",
    ),
    "medicine": ("extra", "original", "max strength", "soluble", "rapid", "night", "day & night", "honey & lemon"),
    "baby": ("newborn", "sensitive", "stage 1", "stage 2", "first", "fragrance free", "junior", "organic"),
    "pet": (
        "chicken",
        "beef",
        "salmon",
        "lamb",
        "turkey",
        "adult",
        "senior",
        "puppy",
        "kitten",
        "gravy",
        "jelly",
        "ocean fish",
    ),
    "auto": ("all season", "winter", "diesel", "synthetic", "concentrated", "universal"),
    "generic": ("assorted", "mixed", "large", "small", "value", "multi purpose"),
}

SIZES = {
    "milk": ("1 pint", "2 pint", "4 pint", "1 litre", "2 litre"),
    "pot": ("125 g", "150 g", "170 g", "450 g", "500 g", "4 x 120 g", "6 x 100 g"),
    "drink": ("250 ml", "330 ml", "500 ml", "1 litre", "6 x 100 ml", "8 x 100 ml"),
    "block": ("200 g", "250 g", "350 g", "400 g", "500 g"),
    "eggs": ("6 pack", "12 pack", "15 pack"),
    "loaf": ("400 g", "800 g", "600 g", "6 pack", "4 pack"),
    "each": ("each", "single", "2 pack", "4 pack"),
    "bar": ("35 g", "45 g", "51 g", "95 g", "100 g", "4 pack", "5 x 25 g"),
    "bag": ("150 g", "175 g", "200 g", "6 x 25 g", "12 x 25 g", "40 g"),
    "box": ("200 g", "300 g", "380 g", "500 g", "750 g"),
    "can": ("330 ml", "500 ml", "4 x 440 ml", "6 x 330 ml", "12 x 330 ml", "1.5 litre", "2 litre"),
    "bottle": ("500 ml", "750 ml", "1 litre", "1.5 litre", "2 litre", "6 x 500 ml"),
    "jar": ("100 g", "200 g", "227 g", "80 pack", "40 pack", "160 pack"),
    "beer": ("4 x 440 ml", "10 x 440 ml", "12 x 330 ml", "500 ml", "660 ml", "20 x 330 ml"),
    "wine": ("75 cl", "187 ml", "1.5 litre", "3 litre", "37.5 cl"),
    "spirit": ("70 cl", "35 cl", "1 litre", "20 cl"),
    "loose": ("loose", "per kg", "500 g", "1 kg", "each", "6 pack"),
    "punnet": ("150 g", "200 g", "250 g", "400 g", "500 g"),
    "meat": ("300 g", "400 g", "500 g", "750 g", "1 kg", "per kg"),
    "slices": ("90 g", "100 g", "120 g", "200 g", "400 g"),
    "meal": ("400 g", "450 g", "350 g", "2 pack", "800 g"),
    "tub": ("500 ml", "900 ml", "1 litre", "4 pack", "6 pack"),
    "pack": ("500 g", "1 kg", "250 g", "2 kg"),
    "tin": ("400 g", "415 g", "4 x 400 g", "200 g", "145 g"),
    "sauce": ("250 ml", "350 g", "500 g", "430 ml", "285 g"),
    "wash": ("20 wash", "40 wash", "1.5 litre", "750 ml", "60 wash"),
    "spray": ("500 ml", "750 ml", "1 litre", "2 pack"),
    "roll": ("4 roll", "9 roll", "2 roll", "12 roll", "16 roll"),
    "tube": ("75 ml", "100 ml", "50 ml", "2 pack"),
    "care": ("250 ml", "400 ml", "500 ml", "200 ml", "150 ml", "50 ml"),
    "tabs": ("16 tablets", "32 tablets", "12 capsules", "24 caplets", "100 ml"),
    "nappy": ("24 pack", "36 pack", "56 pack", "64 pack", "80 pack"),
    "petwet": ("400 g", "12 x 100 g", "4 x 85 g", "40 x 100 g", "6 x 400 g"),
    "petdry": ("800 g", "2 kg", "4 kg", "7.5 kg", "1.5 kg"),
    "litter": ("5 litre", "10 litre", "15 litre"),
    "auto": ("1 litre", "5 litre", "500 ml", "each", "10 litre"),
}

TAXONOMY = {
    "dairy & eggs": {
        "milk": {
            "fresh milk": (("milk", "fresh milk"), "milk", "milk", 1.2),
            "flavoured milk": (("milkshake", "flavoured milk", "milk drink"), "ice", "drink", 1.3),
            "milk alternatives": (("oat drink", "almond drink", "soya drink", "coconut drink"), "alt", "drink", 1.7),
        },
        "yoghurts": {
            "spoonable yoghurts": (("yoghurt", "greek style yoghurt", "fat free yoghurt"), "fruit", "pot", 1.5),
            "yoghurt drinks": (("yoghurt drink", "drinking yoghurt", "kefir"), "fruit", "drink", 2.0),
            "kids yoghurts": (("fromage frais", "kids yoghurt", "yoghurt tubes"), "fruit", "pot", 1.8),
        },
        "cheese": {
            "hard cheese": (("cheddar", "red leicester", "double gloucester", "parmesan"), "dairy", "block", 3.0),
            "soft cheese": (("soft cheese", "brie", "mozzarella", "cream cheese"), "dairy", "block", 2.2),
            "cheese snacks": (("cheese strings", "mini cheeses", "cheese bites"), "dairy", "bag", 2.0),
        },
        "butter & spreads": {
            "butter": (("butter", "spreadable butter", "block butter"), "butter", "block", 2.3),
            "spreadable fats": (("spread", "margarine", "vegetable spread", "olive spread"), "butter", "box", 1.8),
        },
        "eggs": {
            "eggs": (("eggs", "hen eggs", "duck eggs"), "eggs", "eggs", 2.0),
        },
    },
    "bakery": {
        "bread": {
            "sliced bread": (("bread", "sliced loaf", "toastie loaf"), "bread", "loaf", 1.1),
            "rolls & baps": (("rolls", "baps", "finger rolls", "brioche buns"), "bread", "loaf", 1.0),
            "wraps & flatbreads": (("tortilla wraps", "naan", "pitta bread", "flatbread"), "bread", "loaf", 1.2),
        },
        "cakes & pastries": {
            "cakes": (("cake", "sponge cake", "loaf cake", "cake slices"), "cake", "each", 2.5),
            "pastries": (("croissants", "pain au chocolat", "danish pastry", "cinnamon swirl"), "pastry", "each", 1.8),
            "muffins & doughnuts": (("muffins", "doughnuts", "cookies"), "cake", "each", 1.6),
        },
        "breakfast bakery": {
            "crumpets & pancakes": (
                ("crumpets", "pancakes", "scotch pancakes", "pikelets"),
                ("original", "buttermilk", "sultana", "golden", "mini", "toasting"),
                "each",
                1.0,
            ),
            "bagels & teacakes": (
                ("bagels", "english muffins", "teacakes"),
                ("plain", "sesame", "cinnamon & raisin", "multiseed", "onion", "fruity"),
                "each",
                1.3,
            ),
        },
    },
    "biscuits & confectionery & snacks": {
        "chocolate": {
            "chocolate bars": (("chocolate bar", "wafer bar", "caramel bar"), "sweet", "bar", 0.9),
            "chocolate novelties": (
                ("creme egg", "chocolate buttons", "chocolate coins", "chocolate lolly"),
                "sweet",
                "bar",
                1.5,
            ),
            "boxed chocolates": (("chocolates", "truffles", "pralines", "selection box"), "sweet", "box", 5.0),
        },
        "sugar confectionery": {
            "chewy sweets": (("chews", "jelly sweets", "gummy bears", "fruit pastilles"), "chew", "bag", 1.0),
            "mints & gum": (("mints", "chewing gum", "sugar free gum"), "chew", "bar", 0.8),
        },
        "crisps & snacks": {
            "crisps": (("crisps", "potato crisps", "tortilla chips", "hand cooked crisps"), "savoury", "bag", 1.4),
            "popcorn & pretzels": (
                ("popcorn", "pretzels", "rice cakes"),
                ("sweet & salty", "salted", "toffee", "sour cream", "sea salt", "butter"),
                "bag",
                1.5,
            ),
            "nuts & seeds": (("peanuts", "cashews", "mixed nuts", "sunflower seeds"), "nut", "bag", 2.0),
        },
        "biscuits": {
            "sweet biscuits": (
                ("biscuits", "cookies", "digestives", "shortbread", "cream biscuits"),
                "sweet",
                "bag",
                1.2,
            ),
            "crackers & crispbreads": (
                ("crackers", "crispbread", "oatcakes", "cream crackers"),
                ("original", "wholemeal", "multigrain", "rye", "sea salt", "cracked pepper"),
                "box",
                1.3,
            ),
        },
    },
    "beverages soft": {
        "water": {
            "still water": (("water", "spring water", "mineral water"), "water", "bottle", 0.6),
            "flavoured water": (("flavoured water", "sparkling water", "infused water"), "water", "bottle", 0.9),
        },
        "carbonates": {
            "cola": (("cola", "cola drink"), "soft", "can", 1.6),
            "fruit carbonates": (("lemonade", "orangeade", "ginger beer", "fizzy drink"), "soft", "can", 1.3),
        },
        "juices": {
            "fruit juice": (("juice", "fruit juice", "juice drink"), "juice", "bottle", 1.8),
            "smoothies": (("smoothie", "fruit smoothie", "juice shot"), "juice", "drink", 2.5),
        },
        "hot drinks": {
            "coffee": (("coffee", "instant coffee", "coffee pods", "ground coffee"), "hot", "jar", 4.5),
            "tea": (("tea bags", "tea", "herbal tea"), "hot", "jar", 2.8),
            "hot chocolate": (
                ("hot chocolate", "malted drink", "cocoa"),
                ("original", "luxury", "instant", "hazelnut", "salted caramel", "light"),
                "jar",
                2.5,
            ),
        },
        "energy & sports drinks": {
            "energy drinks": (("energy drink", "energy shot"), "soft", "can", 1.4),
            "sports drinks": (("sports drink", "isotonic drink", "protein water"), "soft", "bottle", 1.3),
        },
    },
    "beverages alcoholic": {
        "beer & cider": {
            "lager": (("lager", "pilsner", "beer"), "beer", "beer", 6.5),
            "ale & stout": (("ale", "ipa", "stout", "bitter"), "beer", "beer", 5.5),
            "cider": (
                ("cider", "fruit cider", "apple cider"),
                ("apple", "pear", "strawberry & lime", "mixed fruit", "dry", "medium", "cloudy"),
                "beer",
                5.0,
            ),
        },
        "wine": {
            "red wine": (("red wine", "wine"), "wine", "wine", 7.5),
            "white wine": (("white wine", "wine"), "wine", "wine", 7.0),
            "sparkling wine": (
                ("sparkling wine", "prosecco", "cava", "fizz"),
                ("brut", "extra dry", "rose", "vintage", "spumante", "demi sec"),
                "wine",
                11.0,
            ),
        },
        "spirits": {
            "vodka": (("vodka",), "spirit", "spirit", 16.0),
            "gin": (("gin",), "spirit", "spirit", 20.0),
            "whisky & rum": (("whisky", "scotch whisky", "rum", "dark rum"), "spirit", "spirit", 22.0),
        },
        "pre mixed drinks": {
            "pre mixed drinks": (("gin & tonic", "vodka & cola", "hard seltzer", "cocktail"), "soft", "can", 2.5),
        },
    },
    "fresh produce & meat": {
        "fruit": {
            "apples & pears": (("apples", "pears"), "produce", "loose", 2.0),
            "citrus fruit": (("oranges", "lemons", "limes", "satsumas", "clementines"), "produce", "loose", 1.8),
            "berries & grapes": (("strawberries", "blueberries", "raspberries", "grapes"), "produce", "punnet", 2.5),
            "bananas": (("bananas", "fairtrade bananas"), "produce", "loose", 1.0),
        },
        "vegetables": {
            "salad": (("lettuce", "salad leaves", "cucumber", "tomatoes", "spinach"), "produce", "loose", 1.0),
            "root vegetables": (("carrots", "onions", "parsnips", "swede", "beetroot"), "produce", "loose", 0.8),
            "potatoes": (("potatoes", "baking potatoes", "new potatoes", "sweet potatoes"), "produce", "loose", 1.5),
        },
        "meat & poultry": {
            "chicken": (
                ("chicken breast fillets", "chicken thighs", "whole chicken", "chicken drumsticks"),
                "meat",
                "meat",
                4.5,
            ),
            "beef & lamb": (("beef mince", "steak", "lamb chops", "beef burgers"), "meat", "meat", 5.5),
            "pork & bacon": (("bacon rashers", "pork sausages", "pork chops", "gammon steaks"), "meat", "meat", 3.5),
            "cooked meats": (("ham", "chicken slices", "salami", "chorizo"), "meat", "slices", 2.2),
        },
        "fish": {
            "fresh fish": (("salmon fillets", "cod fillets", "haddock", "sea bass"), "fish", "meat", 5.0),
            "smoked & prepared fish": (("smoked salmon", "fish cakes", "fish fingers", "kippers"), "fish", "meal", 3.5),
        },
    },
    "prepared & frozen foods": {
        "frozen foods": {
            "frozen pizza": (("pizza", "stonebaked pizza", "thin & crispy pizza"), "meal", "meal", 3.0),
            "ice cream": (("ice cream", "ice cream tub", "ice lollies", "cones"), "ice", "tub", 3.0),
            "frozen vegetables": (
                ("peas", "chips", "oven chips", "mixed vegetables", "sweetcorn"),
                "frozen",
                "pack",
                1.8,
            ),
            "frozen ready meals": (("ready meal", "pie", "roast dinner"), "meal", "meal", 2.5),
        },
        "chilled meals": {
            "ready meals": (("ready meal", "meal for one", "pasta bake"), "meal", "meal", 3.5),
            "fresh pasta": (
                ("fresh pasta", "tortelloni", "ravioli", "gnocchi"),
                ("spinach & ricotta", "four cheese", "tomato & mozzarella", "mushroom", "beef", "classic"),
                "meal",
                2.5,
            ),
            "dips": (
                ("houmous", "coleslaw", "guacamole", "potato salad", "salsa"),
                ("classic", "reduced fat", "caramelised onion", "red pepper", "chunky", "spicy"),
                "pot",
                1.5,
            ),
        },
        "food to go": {
            "sandwiches": (
                ("sandwich", "wrap", "sub roll", "baguette"),
                (
                    "chicken & bacon",
                    "egg mayo",
                    "ham & cheese",
                    "tuna & sweetcorn",
                    "blt",
                    "prawn mayo",
                    "cheese & pickle",
                ),
                "each",
                3.0,
            ),
            "snack pots": (("pasta salad", "noodle salad", "fruit pot", "protein pot"), "generic", "each", 2.2),
        },
    },
    "store cupboard": {
        "pasta rice & noodles": {
            "dry pasta": (
                ("pasta", "spaghetti", "penne", "fusilli"),
                ("durum wheat", "wholewheat", "gluten free", "egg", "organic", "quick cook"),
                "pack",
                1.0,
            ),
            "rice": (
                ("rice", "microwave rice", "risotto rice"),
                ("basmati", "long grain", "jasmine", "brown", "wholegrain", "egg fried", "pilau"),
                "pack",
                1.8,
            ),
            "noodles": (
                ("noodles", "instant noodles", "noodle pot"),
                ("chicken", "beef", "chow mein", "sweet & sour", "curry", "egg", "rice"),
                "pack",
                1.1,
            ),
        },
        "tinned foods": {
            "tinned beans & vegetables": (
                ("baked beans", "chickpeas", "kidney beans", "chopped tomatoes", "sweetcorn"),
                ("in tomato sauce", "reduced sugar", "organic", "in water", "whole"),
                "tin",
                0.8,
            ),
            "soup": (
                ("soup", "cup soup", "broth"),
                ("tomato", "chicken", "vegetable", "mushroom", "minestrone", "lentil", "pea & ham"),
                "tin",
                1.2,
            ),
            "tinned fish & meat": (
                ("tuna chunks", "sardines", "mackerel fillets", "corned beef", "salmon"),
                ("in brine", "in sunflower oil", "in spring water", "in tomato sauce", "skinless"),
                "tin",
                1.6,
            ),
        },
        "sauces & condiments": {
            "cooking sauces": (
                ("cooking sauce", "pasta sauce", "curry sauce", "stir fry sauce"),
                "sauce",
                "sauce",
                1.8,
            ),
            "table sauces": (
                ("ketchup", "mayonnaise", "brown sauce", "mustard", "salad cream"),
                ("tomato", "light", "squeezy", "original", "wholegrain", "english", "dijon"),
                "sauce",
                1.9,
            ),
        },
        "breakfast cereals": {
            "cereals": (("cereal", "flakes", "granola", "muesli", "hoops"), "cereal", "box", 2.5),
            "porridge & oats": (
                ("porridge oats", "porridge pots", "oat sachets"),
                ("original", "golden syrup", "apple & blueberry", "jumbo", "scottish", "rolled"),
                "box",
                1.9,
            ),
        },
        "baking & sugar": {
            "flour & sugar": (("flour", "sugar", "bread flour"), "baking", "pack", 1.2),
            "home baking": (
                ("baking powder", "cake mix", "vanilla extract", "cocoa powder", "sprinkles"),
                ("chocolate", "vanilla", "gluten free", "madagascan", "rainbow", "classic"),
                "jar",
                1.8,
            ),
        },
    },
    "household": {
        "laundry": {
            "laundry detergent": (("washing liquid", "washing powder", "laundry capsules"), "clean", "wash", 6.0),
            "fabric conditioner": (("fabric conditioner", "fabric softener"), "clean", "wash", 3.5),
        },
        "cleaning": {
            "surface cleaners": (
                ("surface spray", "multi purpose cleaner", "kitchen cleaner", "bathroom cleaner"),
                "clean",
                "spray",
                2.0,
            ),
            "toilet care": (("toilet cleaner", "bleach", "toilet rim block"), "clean", "spray", 1.6),
            "dishwashing": (("washing up liquid", "dishwasher tablets", "rinse aid"), "clean", "tabs", 3.0),
        },
        "paper products": {
            "toilet tissue": (("toilet tissue", "toilet roll"), "paper", "roll", 4.0),
            "kitchen roll & tissues": (
                ("kitchen roll", "tissues", "facial tissues", "paper towels"),
                "paper",
                "roll",
                2.5,
            ),
        },
        "household detail unknown total": {
            "household": (
                ("bin bags", "batteries", "light bulb", "foil", "cling film", "candles"),
                "generic",
                "each",
                3.0,
            ),
        },
    },
    "health & beauty": {
        "hair care": {
            "shampoo": (("shampoo", "dry shampoo"), "beauty", "care", 3.0),
            "conditioner": (("conditioner", "hair mask"), "beauty", "care", 3.0),
            "hair styling": (("hairspray", "hair gel", "styling mousse", "hair wax"), "beauty", "care", 3.5),
        },
        "oral care": {
            "toothpaste": (("toothpaste",), "beauty", "tube", 2.0),
            "toothbrushes": (
                ("toothbrush", "toothbrush heads", "interdental brushes"),
                ("medium", "soft", "firm", "sensitive", "whitening", "kids"),
                "each",
                3.0,
            ),
            "mouthwash": (("mouthwash", "mouth rinse"), "beauty", "care", 3.0),
        },
        "skin care": {
            "moisturisers": (("moisturiser", "body lotion", "face cream", "hand cream"), "beauty", "care", 5.0),
            "sun care": (
                ("sun cream", "after sun", "sun spray"),
                ("spf 30", "spf 50", "spf 15", "kids spf 50", "aloe vera", "sensitive"),
                "care",
                7.0,
            ),
        },
        "bath & shower": {
            "shower gel": (("shower gel", "body wash", "shower cream"), "beauty", "care", 2.0),
            "soap & handwash": (("soap", "handwash", "soap bars"), "beauty", "care", 1.5),
            "deodorants": (("deodorant", "antiperspirant", "body spray", "roll on"), "beauty", "care", 2.8),
        },
        "medicines": {
            "pain relief": (("paracetamol", "ibuprofen", "pain relief tablets", "aspirin"), "medicine", "tabs", 2.0),
            "cold & flu": (
                ("cold & flu capsules", "cough syrup", "throat lozenges", "decongestant"),
                "medicine",
                "tabs",
                4.0,
            ),
        },
    },
    "baby care": {
        "baby hygiene": {
            "nappies": (("nappies", "nappy pants", "swim nappies"), "baby", "nappy", 8.0),
            "baby wipes": (("baby wipes", "wipes", "water wipes"), "baby", "nappy", 2.0),
        },
        "baby food & milk": {
            "baby meals": (("baby food", "fruit puree", "baby snacks", "baby porridge"), "baby", "pot", 1.2),
            "baby formula": (("infant formula", "follow on milk", "growing up milk"), "baby", "box", 11.0),
        },
        "baby care detail unknown total": {
            "baby care": (("baby bottle", "bed mats", "dummy", "bibs"), "baby", "each", 4.0),
        },
    },
    "pet care": {
        "dog": {
            "wet dog food": (("dog food", "dog food pouches", "dog food tins"), "pet", "petwet", 4.0),
            "dry dog food": (("dry dog food", "dog biscuits", "complete dog food"), "pet", "petdry", 8.0),
            "dog treats": (("dog treats", "dental sticks", "dog chews"), "pet", "bag", 2.5),
        },
        "cat": {
            "wet cat food": (("cat food", "cat food pouches", "cat food tins"), "pet", "petwet", 3.5),
            "dry cat food": (("dry cat food", "cat biscuits"), "pet", "petdry", 5.0),
            "cat litter": (
                ("cat litter", "clumping litter"),
                ("clumping", "lightweight", "scented", "natural", "wood based"),
                "litter",
                5.0,
            ),
        },
    },
    "automotive": {
        "automotive detail unknown total": {
            "automotive": (("adblue", "screenwash", "engine oil", "de icer", "air freshener"), "auto", "auto", 6.0),
        },
    },
}

GENERIC_GROUPS = frozenset({"household detail unknown total", "automotive detail unknown total"})
# The catch-all brand leads in loose fresh produce, as unbranded goods do on real receipts.
CATCH_ALL_SUPERGROUPS = frozenset({"fresh produce & meat"})

# ---- word material for invented names ------------------------------------------------------------
# Pack wording a few products carry in their full name (it makes the long tail of line lengths).
_PACK_WORDS = (
    "multipack",
    "price marked",
    "family size",
    "value pack",
    "twin pack",
    "limited edition",
    "new recipe",
    "bumper pack",
    "special edition",
    "big pack",
)
_BRAND_HEADS = (
    "glen",
    "brack",
    "sun",
    "oak",
    "marl",
    "kel",
    "tor",
    "fen",
    "ash",
    "bel",
    "cor",
    "dun",
    "el",
    "far",
    "hal",
    "kin",
    "lor",
    "mer",
    "nor",
    "pen",
    "quin",
    "ros",
    "sal",
    "tam",
    "ul",
    "ven",
    "wil",
    "yar",
    "bram",
    "cal",
    "dor",
    "eld",
    "gar",
    "hol",
    "jun",
    "lang",
    "mor",
    "nev",
    "ors",
    "pol",
    "ral",
    "stan",
    "tre",
    "vel",
    "wex",
    "cro",
    "fal",
    "har",
    "bex",
    "lin",
)
_BRAND_TAILS = (
    "moor",
    "well",
    "vale",
    "field",
    "ton",
    "by",
    "ford",
    "wick",
    "mere",
    "dale",
    "ly",
    "ia",
    "o",
    "ex",
    "ara",
    "ino",
    "ster",
    "bury",
    "leigh",
    "worth",
    "hurst",
    "combe",
    "ella",
    "ana",
    "ix",
    "on",
    "ett",
    "ore",
    "ish",
    "away",
)
_SUB_BRAND_WORDS = ("organic", "kids", "gold", "light", "naturals", "extra", "classic", "select", "free from", "finest")
_BRAND_ADJECTIVES = ("pure", "little", "golden", "happy", "wild", "old", "true", "simply", "big", "green")
_BRAND_TITLES = ("dr", "mr", "ma", "uncle", "aunt")
_STORE_BRAND_HEADS = ("verde", "nouri", "crisp", "value", "every", "home", "basic", "fresh")
_STORE_BRAND_TAILS = ("mart", "fy", "corner", "choice", "day", "best", "way", "shop")
_RETAILER_ROOTS = (
    "organi",
    "green",
    "herb",
    "produ",
    "nosh",
    "fresh",
    "pantri",
    "basket",
    "harvest",
    "crumb",
    "grocer",
    "larder",
    "orchard",
    "meadow",
    "thrift",
    "bargain",
    "urban",
    "village",
    "daily",
    "kwik",
    "sun",
    "maple",
    "cedar",
    "willow",
    "river",
    "stone",
    "golden",
    "silver",
    "happy",
    "smart",
    "prime",
    "little",
    "home",
    "field",
    "market",
)
_RETAILER_SUFFIXES = (
    "ify",
    "corner",
    "zen",
    "grove",
    "mart",
    "ly",
    "hub",
    "box",
    "stop",
    "fare",
    "nest",
    "way",
    "shop",
    "store",
    "co",
    "isle",
)

# Shorthand a receipt printer uses for a unit word; each retailer sticks to one of them.
UNIT_SHORTHAND = {
    "litre": ("l", "ltr", "lt"),
    "pack": ("pk", "s", "pck"),
    "pint": ("pt", "pint", "pnt"),
    "roll": ("rl", "roll", "r"),
    "wash": ("w", "wsh", "wash"),
    "tablets": ("tab", "tabs", "s"),
    "capsules": ("caps", "cap", "s"),
    "caplets": ("cplt", "caps", "s"),
    "each": ("ea", "each", ""),
    "single": ("sgl", "single", ""),
    "loose": ("lse", "loose", ""),
    "per": ("/", "per", ""),
    "g": ("g", "g", "gm"),
    "ml": ("ml", "ml", "mls"),
}
# Character substitutions a "mutated" receipt line may carry (visual or phonetic neighbours).
_MUTATION_CANDIDATES = (
    ("a", "e"),
    ("e", "a"),
    ("i", "y"),
    ("o", "0"),
    ("l", "1"),
    ("s", "z"),
    ("c", "k"),
    ("k", "c"),
    ("u", "v"),
    ("m", "n"),
    ("n", "m"),
    ("t", "f"),
    ("b", "d"),
    ("g", "q"),
    ("r", "n"),
    ("w", "v"),
    ("h", "n"),
    ("e", "3"),
    ("a", "4"),
    ("i", "1"),
)
_RECEIPT_WIDTHS = (12, 14, 16, 18, 18, 20, 20, 22, 22, 24, 26, 28, 30, 34, 48, 68)
_VOWELS = frozenset("aeiou")


# ---- randomness -----------------------------------------------------------------------------------
class _Rng:
    """Draws built on random.Random.random() only: Python keeps that stream stable across versions,
    unlike choice/shuffle/gauss, so the committed sample stays reproducible."""

    def __init__(self, seed: str):
        self._random = random.Random(seed).random

    def random(self) -> float:
        return self._random()

    def chance(self, p: float) -> bool:
        return self._random() < p

    def below(self, n: int) -> int:
        return min(int(self._random() * n), n - 1)

    def between(self, low: float, high: float) -> float:
        return low + (high - low) * self._random()

    def choice(self, items):
        return items[self.below(len(items))]

    def weighted(self, cumulative: list[float]) -> int:
        """Index drawn with probability proportional to the increments of `cumulative`."""
        index = bisect.bisect_right(cumulative, self._random() * cumulative[-1])
        return min(index, len(cumulative) - 1)

    def shuffle(self, items: list) -> list:
        for i in range(len(items) - 1, 0, -1):
            j = self.below(i + 1)
            items[i], items[j] = items[j], items[i]
        return items

    def sample(self, items, k: int) -> list:
        return self.shuffle(list(items))[:k]

    def lognormal(self, sigma: float) -> float:
        """exp(N(0, sigma²)) by Box-Muller."""
        u1 = 1.0 - self._random()
        normal = math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * self._random())
        return math.exp(sigma * normal)


def _unit(*parts) -> float:
    """A fixed pseudo-random number in [0, 1) for a key: how systematic choices (a retailer's way of
    writing a word) stay the same on every row without storing tables."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _cumulative(weights) -> list[float]:
    out, total = [], 0.0
    for weight in weights:
        total += weight
        out.append(total)
    return out


# ---- the catalogue --------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReceiptStyle:
    """How one retailer's till prints a product name."""

    width: int  # receipt column width: longer lines are cut there
    keep_word: float  # chance that a word (per word, fixed) is printed in full
    omit_brand: float  # chance (per brand, fixed) that the brand is left off
    join: float  # chance that two adjacent short words run together
    compact_units: bool  # "100ml" rather than "100 ml"
    size_first: bool  # the size before the product words ("6 pk creme egg")
    count_prefix: float  # chance of a leading quantity ("1 adblue")
    mutation_rate: float  # chance per letter of a substitution from `substitutions`
    substitutions: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Retailer:
    name: str
    weight: float  # share of rows, before the product decides
    supergroups: frozenset[str]  # what it stocks
    coverage: float  # share of the products in those supergroups that it stocks
    test_only: bool  # appears only in the test split (a retailer unseen in training)
    style: ReceiptStyle


@dataclass(frozen=True)
class Product:
    product_id: int
    path: tuple[str, str, str, str]  # supergroup, group, module, brand
    brand_words: tuple[str, ...]  # empty for the catch-all brand
    variant: str  # "" when none
    noun: str
    pack: str  # pack wording, "" when none
    size: str  # "" when none
    base_price: float
    weight: float  # popularity: share of rows

    @property
    def name(self) -> str:
        """The full product name, as a namer should write it."""
        return " ".join(
            part for part in (" ".join(self.brand_words), self.variant, self.noun, self.pack, self.size) if part
        )


@dataclass(frozen=True)
class Catalogue:
    seed: int
    paths: tuple[tuple[str, str, str, str], ...]  # every label path, sorted
    products: tuple[Product, ...]
    retailers: tuple[Retailer, ...]

    def labels(self, level: str) -> list[str]:
        """The distinct labels of one level, sorted."""
        index = LEVELS.index(level)
        return sorted({path[index] for path in self.paths})

    def hierarchy(self) -> Hierarchy:
        """Every path of the catalogue with count 1 (the label space, not training counts)."""
        return Hierarchy(pd.DataFrame([(*path, 1) for path in self.paths], columns=[*LEVELS, "count"]))


def _module_specs():
    """(supergroup, group, module, nouns, variants, sizes, mean price) in TAXONOMY order."""
    for supergroup, groups in TAXONOMY.items():
        for group, modules in groups.items():
            for module, (nouns, variants, sizes, price) in modules.items():
                variants = VARIANTS[variants] if isinstance(variants, str) else variants
                yield supergroup, group, module, nouns, variants, SIZES[sizes], price


def _invent_brands(rng: _Rng, n_brands: int) -> list[str]:
    """Pseudo-word brands, some multi-word ("pure kelby", "fen & hollis", "dr marlows") and some
    sub-brands of another ("glenmoor organic")."""
    stems = rng.shuffle([head + tail for head in _BRAND_HEADS for tail in _BRAND_TAILS])
    stems = [s for s in stems if len(s) >= 4]
    stem_iter = iter(stems)
    brands: list[str] = []
    seen: set[str] = set()
    while len(brands) < n_brands:
        kind = rng.random()
        if kind < 0.10 and brands:
            parent = rng.choice([b for b in brands if " " not in b] or brands)
            brand = f"{parent} {rng.choice(_SUB_BRAND_WORDS)}"
        elif kind < 0.18:
            brand = f"{next(stem_iter)} & {next(stem_iter)}"
        elif kind < 0.23:
            brand = f"{rng.choice(_BRAND_TITLES)} {next(stem_iter)}s"
        elif kind < 0.28:
            brand = f"{rng.choice(_BRAND_ADJECTIVES)} {next(stem_iter)}"
        else:
            brand = next(stem_iter)
        if brand not in seen and brand != CATCH_ALL_BRAND:
            seen.add(brand)
            brands.append(brand)
    return brands


def _assign_brands(rng: _Rng, specs, n_brands: int, n_store_brands: int) -> dict[str, list[str]]:
    """module → brands in popularity order. Every branded module gets some home brands; a third of
    the brands also sit under 1–3 more modules (mostly nearby in the tree); store brands span many
    modules; the catch-all sits under every generic and fresh-produce module and a quarter of the rest."""
    branded = [spec for spec in specs if spec[1] not in GENERIC_GROUPS]
    brands = _invent_brands(rng, n_brands)
    under: dict[str, list[str]] = {spec[2]: [] for spec in specs}
    homes = [spec[2] for spec in rng.shuffle(list(branded))]  # the first brands cover every module once
    parent_module: dict[str, str] = {}
    for brand in brands:
        base = brand.rsplit(" ", 1)[0]
        if base in parent_module and rng.chance(0.8):
            home = parent_module[base]  # a sub-brand usually lives next to its parent
        elif homes:
            home = homes.pop()
        else:
            home = rng.choice(branded)[2]
        parent_module[brand] = home
        under[home].append(brand)
        if rng.chance(0.33):
            home_spec = next(spec for spec in branded if spec[2] == home)
            for _ in range(1 + rng.below(3)):
                roll = rng.random()
                if roll < 0.6:
                    pool = [s for s in branded if s[1] == home_spec[1]]
                elif roll < 0.9:
                    pool = [s for s in branded if s[0] == home_spec[0]]
                else:
                    pool = branded
                module = rng.choice(pool)[2]
                if brand not in under[module]:
                    under[module].append(brand)
    store_brands = []
    while len(store_brands) < n_store_brands:
        name = rng.choice(_STORE_BRAND_HEADS) + rng.choice(_STORE_BRAND_TAILS)
        if name not in store_brands and name not in parent_module:
            store_brands.append(name)
    for name in store_brands:
        for spec in rng.sample(branded, 10 + rng.below(15)):
            under[spec[2]].append(name)
    for supergroup, group, module, *_ in specs:
        rng.shuffle(under[module])
        if group in GENERIC_GROUPS:
            under[module] = [CATCH_ALL_BRAND]
        elif supergroup in CATCH_ALL_SUPERGROUPS:
            under[module].insert(0, CATCH_ALL_BRAND)
        elif rng.chance(0.25):
            under[module].insert(min(len(under[module]), 1 + rng.below(4)), CATCH_ALL_BRAND)
    return under


def _invent_retailers(rng: _Rng, supergroups: list[str]) -> tuple[Retailer, ...]:
    names: list[str] = []
    candidates = rng.shuffle([root + suffix for root in _RETAILER_ROOTS for suffix in _RETAILER_SUFFIXES])
    for name in candidates:
        if len(names) == N_RETAILERS:
            break
        if not name.endswith(name[-1] * 3):
            names.append(name)
    table = rng.sample(_MUTATION_CANDIDATES, 6)
    retailers = []
    for rank, name in enumerate(names):
        kind = rng.random()
        if kind < 0.55:  # supermarket: everything
            stocked = frozenset(supergroups)
        elif kind < 0.80:  # convenience store: a broad subset
            stocked = frozenset(rng.sample(supergroups, 6 + rng.below(3)))
        else:  # specialist: a few supergroups
            stocked = frozenset(rng.sample(supergroups, 1 + rng.below(3)))
        own = tuple(rng.sample(_MUTATION_CANDIDATES, 2))
        width = rng.choice(_RECEIPT_WIDTHS)
        style = ReceiptStyle(
            width=width,
            keep_word=rng.between(0.0, 0.55),
            omit_brand=rng.between(0.0, 0.4),
            join=rng.between(0.0, 0.25),
            compact_units=rng.chance(0.5),
            size_first=width >= 24 and rng.chance(0.2),
            count_prefix=rng.choice((0.0, 0.0, 0.0, 0.2, 0.9)),
            mutation_rate=0.0 if rng.chance(0.4) else rng.between(0.02, 0.15),
            substitutions=tuple(table) + own,
        )
        retailers.append(
            Retailer(
                name=name,
                weight=1.0 / (rank + 1) ** 0.8,
                supergroups=stocked,
                coverage=rng.between(0.5, 1.0),
                test_only=rank >= N_RETAILERS - N_TEST_ONLY_RETAILERS,
                style=style,
            )
        )
    return tuple(retailers)


def generate_catalogue(seed: int = 20241, *, n_brands: int = 330, n_store_brands: int = 8) -> Catalogue:
    """An invented catalogue, the same for the same seed: the fixed label tree of TAXONOMY, brands
    and their modules, products with popularity and base price, and 63 retailers (the last three
    appear in test rows only)."""
    rng = _Rng(f"catalogue:{seed}")
    specs = list(_module_specs())
    under = _assign_brands(rng, specs, n_brands, n_store_brands)
    brand_premium: dict[str, float] = {}
    module_weight = {}
    for rank, spec in enumerate(rng.shuffle(list(specs))):
        module_weight[spec[2]] = 1.0 / (rank + MODULE_OFFSET) ** MODULE_ZIPF
    products: list[Product] = []
    for supergroup, group, module, nouns, variants, sizes, mean_price in specs:
        module_price = mean_price * rng.lognormal(0.15)
        brands = under[module]
        brand_weights = [1.0 / (rank + 1) ** BRAND_ZIPF for rank in range(len(brands))]
        brand_total = sum(brand_weights)
        for brand_rank, (brand, brand_weight) in enumerate(zip(brands, brand_weights)):
            if brand not in brand_premium:
                brand_premium[brand] = 0.85 if brand == CATCH_ALL_BRAND else rng.lognormal(0.25)
            n_products = 1 + int(rng.random() ** 1.5 * (30 if brand_rank < 2 else 10))  # leaders have more lines
            names: set[tuple[str, str, str, str]] = set()
            for _ in range(3 * n_products):
                if len(names) == n_products:
                    break
                variant = rng.choice(variants) if rng.chance(0.8) else ""
                noun = rng.choice(nouns)
                pack = rng.choice(_PACK_WORDS) if rng.chance(0.08) else ""
                # a bare generic noun ("ale") gets a size, so that every name has a few words
                unnamed = brand == CATCH_ALL_BRAND and not variant
                size = rng.choice(sizes) if unnamed or rng.chance(0.9) else ""
                names.add((variant, noun, pack, size))
            product_weights = [1.0 / (rank + 1) ** PRODUCT_ZIPF for rank in range(len(names))]
            product_total = sum(product_weights)
            for (variant, noun, pack, size), product_weight in zip(sorted(names), product_weights):
                products.append(
                    Product(
                        product_id=len(products),
                        path=(supergroup, group, module, brand),
                        brand_words=() if brand == CATCH_ALL_BRAND else tuple(brand.split(" ")),
                        variant=variant,
                        noun=noun,
                        pack=pack,
                        size=size,
                        base_price=module_price * brand_premium[brand] * rng.lognormal(0.3),
                        weight=module_weight[module] * brand_weight / brand_total * product_weight / product_total,
                    )
                )
    paths = tuple(sorted({product.path for product in products}))
    retailers = _invent_retailers(rng, list(TAXONOMY))
    return Catalogue(seed=seed, paths=paths, products=tuple(products), retailers=retailers)


# ---- receipt descriptions -------------------------------------------------------------------------
def _devowel(word: str) -> str:
    """Drop vowels after the first letter and squeeze doubled letters: "strawberry" → "strwbry"."""
    out = word[0]
    for char in word[1:]:
        if char not in _VOWELS and char != out[-1]:
            out += char
    return out


def _abbreviate(word: str, draw: float, length_draw: float) -> str:
    """One of the receipt abbreviations of a word, picked by `draw` in [0, 1)."""
    if len(word) <= 3 or not word.isalpha():
        return word
    if draw < 0.45:
        return word[: 3 + int(length_draw * 3)]  # "strawberry" → "str" .. "straw"
    if draw < 0.75:
        return _devowel(word)
    return _devowel(word)[: 4 + int(length_draw * 3)]  # "strwbry" → "strw" .. "strwbr"


class _Printer:
    """Renders a product name as one retailer's receipt line. The choices that a till makes the
    same way every time (how it shortens a word, a brand, a unit) are keyed hashes; a small share
    of rows deviates at random, as hand-keyed product files do."""

    def __init__(self, seed: int):
        self.seed = seed

    def word(self, word: str, retailer: Retailer, rng: _Rng) -> str:
        if rng.chance(0.1):
            keep, draw, length = rng.random(), rng.random(), rng.random()
        else:
            keep = _unit(self.seed, "keep", retailer.name, word)
            draw = _unit(self.seed, "abbr", retailer.name, word)
            length = _unit(self.seed, "len", word)
        return word if keep < retailer.style.keep_word else _abbreviate(word, draw, length)

    def brand(self, words: tuple[str, ...], retailer: Retailer, rng: _Rng) -> list[str]:
        if not words or _unit(self.seed, "omit", retailer.name, " ".join(words)) < retailer.style.omit_brand:
            return []
        key = " ".join(words)
        # most tills share a brand's shorthand (it comes from the supplier's product file)
        owner = "all" if _unit(self.seed, "brand-owner", retailer.name, key) < 0.6 else retailer.name
        draw = rng.random() if rng.chance(0.1) else _unit(self.seed, "brand", owner, key)
        if draw < 0.35:
            return list(words)
        if draw < 0.55:
            return [words[0][: 3 + int(_unit(self.seed, "brand-len", key) * 2)]]  # "glenmoor" → "gle"/"glen"
        if draw < 0.75:
            return [_devowel(words[0])] + [_devowel(w) for w in words[1:] if w != "&"][:1]
        if len(words) > 1:
            return [words[0][0] + words[-1]]  # "pure baby" → "pbaby"
        return [words[0][:2]]

    def unit(self, unit: str, retailer: Retailer) -> str:
        options = UNIT_SHORTHAND.get(unit)
        if options is None:
            return unit
        return options[int(_unit(self.seed, "unit", retailer.name, unit) * len(options))]

    def size(self, size: str, retailer: Retailer) -> list[str]:
        if not size:
            return []
        tokens = [self.unit(token, retailer) for token in size.split(" ")]
        tokens = [token for token in tokens if token]
        return ["".join(tokens)] if retailer.style.compact_units and tokens else tokens

    def mutate(self, text: str, retailer: Retailer, rng: _Rng) -> str:
        rate = retailer.style.mutation_rate
        if rate == 0.0:
            return text
        table = {}
        for source, target in retailer.style.substitutions:
            table.setdefault(source, target)
        chars = [table[c] if c in table and rng.chance(rate) else c for c in text]
        if len(chars) > MIN_DESCRIPTION and rng.chance(2 * rate):  # two neighbouring letters swapped
            i = rng.below(len(chars) - 1)
            if chars[i].isalpha() and chars[i + 1].isalpha():
                chars[i], chars[i + 1] = chars[i + 1], chars[i]
        return "".join(chars)

    def describe(self, product: Product, retailer: Retailer, rng: _Rng) -> str:
        words = [self.word(w, retailer, rng) for w in f"{product.variant} {product.noun} {product.pack}".split()]
        words = [w for w in words if w]
        words = self._join(self.brand(product.brand_words, retailer, rng) + words, retailer, rng)
        size = self.size(product.size, retailer)
        tokens = size + words if retailer.style.size_first else words + size
        if rng.chance(retailer.style.count_prefix):
            tokens = ["1" if rng.chance(0.9) else str(2 + rng.below(3))] + tokens
        text = self.mutate(" ".join(tokens), retailer, rng)
        text = text[: retailer.style.width].rstrip()
        if len(text) < MIN_DESCRIPTION:  # too short to read: the till prints the plain name
            text = product.name[: max(retailer.style.width, MIN_DESCRIPTION)].rstrip()
        return text[:MAX_DESCRIPTION].rstrip()

    @staticmethod
    def _join(words: list[str], retailer: Retailer, rng: _Rng) -> list[str]:
        out: list[str] = []
        for word in words:
            if (
                out
                and len(out[-1]) <= 5
                and len(word) <= 6
                and "&" not in (out[-1], word)
                and rng.chance(retailer.style.join)
            ):
                out[-1] += word
            else:
                out.append(word)
        return out


# ---- rows -----------------------------------------------------------------------------------------
def generate_rows(
    catalogue: Catalogue, *, n_train: int, n_test: int, seed: int, stream: str = "rows"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train and test rows drawn from one distribution (test also has 2 % of rows from retailers
    never seen in training). Columns: indoml_id, description, retailer, price (float, NaN when
    missing), price_quoted (the receipt gave the price as text), *LEVELS, name. Train is sorted by
    label path and description, as the datathon's file was; test is in random order. indoml_id is
    unique over both. `stream` names the random stream ("rows": the sample's), so that another
    stream draws other rows from the same catalogue."""
    rng = _Rng(f"{stream}:{seed}")
    printer = _Printer(catalogue.seed)
    products = catalogue.products
    product_cum = _cumulative(p.weight for p in products)
    regular = [r for r in catalogue.retailers if not r.test_only]
    newcomers = [r for r in catalogue.retailers if r.test_only]
    regular_cum = _cumulative(r.weight for r in regular)
    newcomer_cum = _cumulative(r.weight for r in newcomers)
    stockists: dict[int, tuple[list[Retailer], list[float]]] = {}
    retailer_factor = {r.name: rng.lognormal(0.08) for r in catalogue.retailers}

    def stockists_of(product: Product):
        if product.product_id not in stockists:
            sellers = [
                r
                for r in regular
                if product.path[0] in r.supergroups
                and _unit(catalogue.seed, "stock", r.name, product.product_id) < r.coverage
            ] or regular
            stockists[product.product_id] = (sellers, _cumulative(r.weight for r in sellers))
        return stockists[product.product_id]

    records = []
    ids = rng.shuffle(list(range(n_train + n_test)))
    for i in range(n_train + n_test):
        product = products[rng.weighted(product_cum)]
        if i >= n_train and newcomers and rng.chance(NEW_RETAILER_TEST_SHARE):
            retailer = newcomers[rng.weighted(newcomer_cum)]
        elif rng.chance(UNRELATED_RETAILER_SHARE):
            retailer = regular[rng.weighted(regular_cum)]
        else:
            sellers, cum = stockists_of(product)
            retailer = sellers[rng.weighted(cum)]
        price = product.base_price * retailer_factor[retailer.name] * rng.lognormal(0.05)
        if rng.chance(0.08):  # promotion
            price *= rng.between(0.5, 0.85)
        missing = rng.chance(MISSING_PRICE_SHARE)
        quoted = rng.chance(QUOTED_PRICE_SHARE)
        records.append(
            {
                "indoml_id": ids[i],
                "description": printer.describe(product, retailer, rng),
                "retailer": retailer.name,
                "price": math.nan if missing else max(round(price, 2), 0.05),
                "price_quoted": quoted and not missing,
                **dict(zip(LEVELS, product.path)),
                "name": product.name,
            }
        )
    frame = pd.DataFrame.from_records(records)
    frame["indoml_id"] = frame["indoml_id"].astype("int64")
    train = frame.iloc[:n_train].sort_values([*LEVELS, "description", "indoml_id"], kind="mergesort")
    test = frame.iloc[n_train:]
    return train.reset_index(drop=True), test.reset_index(drop=True)


# ---- rows for a stand-in's pretraining --------------------------------------------------------------
PRETRAINING_STREAM = "pretraining"


def pretraining_rows(catalogue_seed: int, n: int, *, seed: int, run_rows: pd.DataFrame) -> pd.DataFrame:
    """`n` labelled rows with their true names for pretraining a tiny stand-in, drawn apart from
    the run's rows: the same catalogue as `make-sample --seed catalogue_seed` (the products a
    pretrained LLM would know), but a random stream of its own (never the one the sample's train
    and test rows come from), and negative indoml_ids (-1 .. -n), which no make-sample row has (they
    count from 0): so without reading them, the rows are none of the run's.

    `run_rows` are the rows the caller can check against (the run's training and validation rows):
    ValueError when one of their label paths is not the catalogue's (the data was not made from
    it), or when an id is shared (a guard)."""
    if n < 1:
        raise ValueError(f"pretraining rows: n must be at least 1, got {n}")
    catalogue = generate_catalogue(catalogue_seed)
    if set(LEVELS) <= set(run_rows.columns):
        known = set(catalogue.paths)
        labelled = run_rows.dropna(subset=list(LEVELS))
        paths = list(labelled[list(LEVELS)].itertuples(index=False, name=None))
        foreign = [i for i, path in enumerate(paths) if path not in known]
        if foreign:
            row = labelled.iloc[foreign[0]]
            raise ValueError(
                f"{len(foreign)} of {len(paths)} labelled rows have a label path that the catalogue of "
                f"make-sample --seed {catalogue_seed} lacks (indoml_id {row['indoml_id']}: "
                f"{' > '.join(paths[foreign[0]])}): the data was not made from that catalogue"
            )
    rows, _ = generate_rows(catalogue, n_train=n, n_test=0, seed=seed, stream=PRETRAINING_STREAM)
    rows["indoml_id"] = (-1 - rows["indoml_id"]).astype("int64")
    shared = set(rows["indoml_id"]) & set(run_rows["indoml_id"].astype("int64"))
    if shared:
        raise ValueError(f"pretraining rows share {len(shared)} indoml_id(s) with the run's rows, e.g. {min(shared)}")
    return rows


# ---- files ----------------------------------------------------------------------------------------
def write_sample(
    out_dir,
    *,
    n_train: int = 5000,
    n_test: int = 1000,
    seed: int = 20241,
    fmt: str = "parquet",
    test_ids_from: int | None = None,
) -> list[Path]:
    """Write a synthetic train/test sample and return the files written.

    parquet: train.parquet (features + labels), test.parquet (features), test.labels.parquet,
    names.parquet (indoml_id, name, split: the true full product names). The price column is text,
    as the raw data mixes numbers and strings: "2.49", sometimes with literal quotes ("\\"1.99\\""),
    null when missing. jsonl: the datathon's layout, train.features / train.labels / test.features /
    test.labels and names.jsonl, price a JSON number, sometimes a string, null when missing.
    The same arguments give byte-identical files. ids are unique over both files unless
    `test_ids_from` is given: then the test rows are numbered from it in file order, as the real
    competition's test file is (numbered from 0, like the training rows), and names carry the
    split to tell the two apart."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if n_train < 1 or n_test < 1:
        raise ValueError(f"n_train and n_test must be at least 1, got {n_train} and {n_test}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, test = generate_rows(generate_catalogue(seed), n_train=n_train, n_test=n_test, seed=seed)
    if test_ids_from is not None:
        test = test.assign(indoml_id=pd.Series(range(test_ids_from, test_ids_from + len(test)), dtype="int64"))
    names = pd.concat([train.assign(split="train"), test.assign(split="test")])[["indoml_id", "name", "split"]]
    features = ["indoml_id", "description", "retailer", "price"]
    labels = ["indoml_id", *LEVELS]
    if fmt == "parquet":
        tables = {
            "train.parquet": (train, features + list(LEVELS)),
            "test.parquet": (test, features),
            "test.labels.parquet": (test, labels),
            "names.parquet": (names, ["indoml_id", "name", "split"]),
        }
        for file_name, (frame, columns) in tables.items():
            _write_parquet(_arrow_table(frame, columns), out_dir / file_name)
    else:
        tables = {
            "train.features": (train, features),
            "train.labels": (train, labels),
            "test.features": (test, features),
            "test.labels": (test, labels),
            "names.jsonl": (names, ["indoml_id", "name", "split"]),
        }
        for file_name, (frame, columns) in tables.items():
            _write_json_lines(_json_records(frame, columns), out_dir / file_name)
    return [out_dir / file_name for file_name in tables]


def _price_text(price: float, quoted: bool) -> str | None:
    if math.isnan(price):
        return None
    text = f"{price:.2f}"
    return f'"{text}"' if quoted else text


def _arrow_table(frame: pd.DataFrame, columns: list[str]) -> pa.Table:
    data = {}
    for column in columns:
        if column == "indoml_id":
            data[column] = pa.array(frame[column].tolist(), type=pa.int64())
        elif column == "price":
            prices = [_price_text(p, q) for p, q in zip(frame["price"].tolist(), frame["price_quoted"].tolist())]
            data[column] = pa.array(prices, type=pa.string())
        else:
            data[column] = pa.array(frame[column].tolist(), type=pa.string())
    return pa.table(data)


def _write_parquet(table: pa.Table, path: Path) -> None:
    """Fixed writer options and no pandas metadata, so that the bytes depend on the data only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(
            table,
            tmp,
            compression="zstd",
            compression_level=3,
            use_dictionary=True,
            write_statistics=True,
            version="2.6",
        )
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _json_records(frame: pd.DataFrame, columns: list[str]) -> list[dict]:
    records = []
    for row in frame.to_dict(orient="records"):
        record = {column: row[column] for column in columns}
        record["indoml_id"] = int(row["indoml_id"])
        if "price" in record:
            price = float(row["price"])
            record["price"] = None if math.isnan(price) else (f"{price:.2f}" if row["price_quoted"] else price)
        records.append(record)
    return records


def _write_json_lines(records: list[dict], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
