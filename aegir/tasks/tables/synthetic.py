"""Synthetic web tables with SOTAB-style CTA and CPA ground truth, generated from ``data_seed``.

Why: a run must work on a fresh machine without the SOTAB download, and the classification loop needs data with
the *difficulties* of web tables, not clean columns. Each table imitates one website's Schema.org export:

* an entity type (SOTAB topic: Product, Event, JobPosting, ...) chosen with the weights of the label map
  (``sotab_labels.json``), a main (subject) column -- at index 0 most of the time, as in SOTAB -- and a random
  subset of the entity's optional columns in random order, some of them unlabelled (context only);
* a site *style*: one country (or an international site), one format per value family (dates, prices, phones,
  durations, enumerations written as ``InStock`` or ``https://schema.org/InStock``, ...), a chance per cell of
  using another format (format heterogeneity) and a missing-value rate (0 to 30 %);
* rows whose related cells agree (street, postal code, city, region, country, phone prefix and coordinates of one
  city; an end date after its start date; home and away teams that appear in the match name).

Ground truth: every labelled column gives a CTA :class:`ColumnLabel`; every non-main column with a property
gives a CPA :class:`PairLabel` from the main column. Labels are the label map's (Schema.org types as spelled by
SOTAB); the generator covers 87 of SOTAB's Schema.org CTA labels (see the file's ``not_generated``).

Determinism: table ``i`` uses its own ``random.Random`` seeded from ``(data_seed, i)``, so the first ``n`` tables do
not change when ``n_tables`` grows, and no global random state is touched.
"""

from __future__ import annotations

import hashlib
import json
import random
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from datetime import date, datetime, timedelta
from typing import Any

from aegir.tasks.tables.labels import ColumnSpec, EntitySpec, LabelMap, load_label_map
from aegir.tasks.tables.table import (
    ColumnLabel,
    PairLabel,
    Table,
    TableCorpus,
    corpus_content_sha256,
    normalize_cell,
)

ROWS_RANGE = (3, 24)
MIN_OPTIONAL_COLUMNS = 2
MAIN_FIRST_PROBABILITY = 0.85
MISSING_RATES = (0.0, 0.0, 0.02, 0.05, 0.1, 0.2, 0.3)
HETEROGENEITY_RATES = (0.0, 0.0, 0.0, 0.05, 0.1, 0.2, 0.35)


# ----------------------------------------------------------------------------------------------------------------
# Value pools
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _City:
    name: str
    local_name: str
    region: str
    region_code: str
    country: str
    country_code: str
    country_local: str
    currency: str
    language: str  # BCP-47 primary language of the site
    lat: float
    lon: float
    postal: str  # '#' a digit, '@' an upper-case letter
    calling_code: str
    area: str  # area code without the national trunk prefix
    subscriber_digits: int
    number_first: bool  # street number before the street name


_CITIES: tuple[_City, ...] = (
    _City("Berlin", "Berlin", "Berlin", "BE", "Germany", "DE", "Deutschland", "EUR", "de", 52.520, 13.405, "1####",
          "+49", "30", 8, False),
    _City("Munich", "München", "Bavaria", "BY", "Germany", "DE", "Deutschland", "EUR", "de", 48.137, 11.575,
          "8####", "+49", "89", 7, False),
    _City("Hamburg", "Hamburg", "Hamburg", "HH", "Germany", "DE", "Deutschland", "EUR", "de", 53.551, 9.993,
          "2####", "+49", "40", 8, False),
    _City("Vienna", "Wien", "Vienna", "W", "Austria", "AT", "Österreich", "EUR", "de", 48.208, 16.373, "1###",
          "+43", "1", 7, False),
    _City("Zurich", "Zürich", "Zurich", "ZH", "Switzerland", "CH", "Schweiz", "CHF", "de", 47.377, 8.541, "80##",
          "+41", "44", 7, False),
    _City("Paris", "Paris", "Île-de-France", "IDF", "France", "FR", "France", "EUR", "fr", 48.857, 2.352, "750##",
          "+33", "1", 8, True),
    _City("Lyon", "Lyon", "Auvergne-Rhône-Alpes", "ARA", "France", "FR", "France", "EUR", "fr", 45.764, 4.836,
          "690##", "+33", "4", 8, True),
    _City("Madrid", "Madrid", "Community of Madrid", "MD", "Spain", "ES", "España", "EUR", "es", 40.417, -3.704,
          "280##", "+34", "91", 7, False),
    _City("Barcelona", "Barcelona", "Catalonia", "CT", "Spain", "ES", "España", "EUR", "es", 41.385, 2.173,
          "080##", "+34", "93", 7, False),
    _City("Rome", "Roma", "Lazio", "RM", "Italy", "IT", "Italia", "EUR", "it", 41.903, 12.496, "001##", "+39",
          "06", 8, False),
    _City("Milan", "Milano", "Lombardy", "MI", "Italy", "IT", "Italia", "EUR", "it", 45.464, 9.190, "201##", "+39",
          "02", 8, False),
    _City("Amsterdam", "Amsterdam", "North Holland", "NH", "Netherlands", "NL", "Nederland", "EUR", "nl", 52.368,
          4.904, "10## @@", "+31", "20", 7, False),
    _City("Brussels", "Bruxelles", "Brussels-Capital", "BRU", "Belgium", "BE", "België", "EUR", "fr", 50.850,
          4.352, "1###", "+32", "2", 7, True),
    _City("Warsaw", "Warszawa", "Masovia", "MZ", "Poland", "PL", "Polska", "PLN", "pl", 52.230, 21.012, "0#-###",
          "+48", "22", 7, False),
    _City("Stockholm", "Stockholm", "Stockholm County", "AB", "Sweden", "SE", "Sverige", "SEK", "sv", 59.329,
          18.069, "1## ##", "+46", "8", 7, False),
    _City("Copenhagen", "København", "Capital Region", "84", "Denmark", "DK", "Danmark", "DKK", "da", 55.676,
          12.568, "1###", "+45", "", 8, False),
    _City("Prague", "Praha", "Prague", "PR", "Czech Republic", "CZ", "Česko", "CZK", "cs", 50.075, 14.437,
          "1## ##", "+420", "2", 8, False),
    _City("Lisbon", "Lisboa", "Lisbon", "LI", "Portugal", "PT", "Portugal", "EUR", "pt", 38.722, -9.139,
          "1###-###", "+351", "21", 7, False),
    _City("London", "London", "England", "ENG", "United Kingdom", "GB", "United Kingdom", "GBP", "en", 51.507,
          -0.128, "@@# #@@", "+44", "20", 8, True),
    _City("Manchester", "Manchester", "England", "ENG", "United Kingdom", "GB", "United Kingdom", "GBP", "en",
          53.481, -2.243, "M# #@@", "+44", "161", 7, True),
    _City("Dublin", "Dublin", "Leinster", "L", "Ireland", "IE", "Éire", "EUR", "en", 53.350, -6.260, "D## @#@#",
          "+353", "1", 7, True),
    _City("New York", "New York", "New York", "NY", "United States", "US", "United States", "USD", "en", 40.713,
          -74.006, "100##", "+1", "212", 7, True),
    _City("Chicago", "Chicago", "Illinois", "IL", "United States", "US", "United States", "USD", "en", 41.878,
          -87.630, "606##", "+1", "312", 7, True),
    _City("Austin", "Austin", "Texas", "TX", "United States", "US", "United States", "USD", "en", 30.267, -97.743,
          "787##", "+1", "512", 7, True),
    _City("San Francisco", "San Francisco", "California", "CA", "United States", "US", "United States", "USD", "en",
          37.775, -122.419, "941##", "+1", "415", 7, True),
    _City("Seattle", "Seattle", "Washington", "WA", "United States", "US", "United States", "USD", "en", 47.606,
          -122.332, "981##", "+1", "206", 7, True),
    _City("Toronto", "Toronto", "Ontario", "ON", "Canada", "CA", "Canada", "CAD", "en", 43.653, -79.383,
          "M#@ #@#", "+1", "416", 7, True),
    _City("Vancouver", "Vancouver", "British Columbia", "BC", "Canada", "CA", "Canada", "CAD", "en", 49.283,
          -123.121, "V#@ #@#", "+1", "604", 7, True),
    _City("Sydney", "Sydney", "New South Wales", "NSW", "Australia", "AU", "Australia", "AUD", "en", -33.869,
          151.209, "2###", "+61", "2", 8, True),
    _City("Melbourne", "Melbourne", "Victoria", "VIC", "Australia", "AU", "Australia", "AUD", "en", -37.814,
          144.963, "3###", "+61", "3", 8, True),
    _City("Tokyo", "Tōkyō", "Tokyo", "13", "Japan", "JP", "日本", "JPY", "ja", 35.676, 139.650, "1##-####", "+81",
          "3", 8, True),
    _City("São Paulo", "São Paulo", "São Paulo", "SP", "Brazil", "BR", "Brasil", "BRL", "pt", -23.551, -46.633,
          "0####-###", "+55", "11", 8, False),
    _City("Mexico City", "Ciudad de México", "Mexico City", "CDMX", "Mexico", "MX", "México", "MXN", "es", 19.433,
          -99.133, "06###", "+52", "55", 8, False),
)
_COUNTRIES: tuple[_City, ...] = tuple({city.country_code: city for city in _CITIES}.values())

_STREETS: dict[str, tuple[str, ...]] = {
    "de": ("Hauptstraße", "Bahnhofstraße", "Lindenallee", "Gartenweg", "Schillerstraße", "Am Markt", "Goethestr."),
    "fr": ("rue de la Paix", "avenue Victor Hugo", "rue du Commerce", "boulevard Saint-Michel", "rue Lafayette"),
    "es": ("Calle Mayor", "Gran Vía", "Calle de Alcalá", "Avenida de América", "Calle Serrano"),
    "it": ("Via Roma", "Via Garibaldi", "Corso Italia", "Via Dante", "Piazza Navona"),
    "nl": ("Keizersgracht", "Damstraat", "Prinsengracht", "Herengracht"),
    "pl": ("ul. Floriańska", "ul. Długa", "ul. Marszałkowska", "al. Jerozolimskie"),
    "sv": ("Storgatan", "Kungsgatan", "Drottninggatan", "Sveavägen"),
    "da": ("Vesterbrogade", "Nørregade", "Strøget", "Østergade"),
    "cs": ("Václavské náměstí", "Národní", "Karlova", "Vinohradská"),
    "pt": ("Rua Augusta", "Avenida Paulista", "Rua Oscar Freire", "Avenida da Liberdade"),
    "en": ("Main Street", "High Street", "Oak Avenue", "Park Road", "Elm Street", "5th Avenue", "Queen Street W",
           "Market St", "Church Lane"),
    "ja": ("Chuo-dori", "Omotesando", "Meiji-dori", "Ginza 4-chome"),
}
_GIVEN = ("Anna", "Ben", "Clara", "David", "Elena", "Felix", "Grace", "Hugo", "Isabel", "Jonas", "Kenji", "Lena",
          "Mateo", "Nora", "Oliver", "Priya", "Quentin", "Rosa", "Sofia", "Tom", "Uma", "Viktor", "Wei", "Yara",
          "Zoë", "José", "Søren", "Björn", "Chloé", "Łukasz", "Aoife", "Marta", "Luca", "Emma", "Noah", "Mia",
          "James", "Sarah", "Michael", "Laura", "Ahmed", "Fatima", "Hiroshi", "Ingrid", "Pedro", "Camille")
_FAMILY = ("Smith", "Müller", "García", "Rossi", "Dubois", "Kowalski", "Jansen", "Andersson", "Tanaka", "Silva",
           "O'Brien", "Nielsen", "Schmidt", "Martin", "Brown", "Novák", "Fischer", "López", "Bianchi", "Moreau",
           "Wilson", "Sato", "Costa", "Berg", "Walsh", "Taylor", "Johnson", "Weber", "Fernández", "Lefèvre",
           "Nowak", "Kim", "Nguyen", "Murphy", "Hansen", "Svoboda")
_TITLES = ("Dr.", "Prof.", "Dr. med.", "Prof. Dr.")
_ORG_WORDS = ("Blue", "North", "Bright", "Silver", "Green", "Harbor", "Summit", "Cedar", "Atlas", "Nova", "Pioneer",
              "Lumen", "Vertex", "Horizon", "Maple", "Granite", "Orbit", "Crescent")
_ORG_NOUNS = ("Solutions", "Systems", "Media", "Logistics", "Consulting", "Foods", "Health", "Energy", "Labs",
              "Studios", "Analytics", "Retail", "Capital", "Networks")
_ORG_SUFFIXES = ("GmbH", "Ltd", "Inc.", "LLC", "AG", "S.A.", "B.V.", "SAS", "S.r.l.", "plc", "Group", "& Co. KG")
_BRANDS = ("Fjordline", "Acme", "Luxora", "Verdant", "Kestrel", "Nimbus", "Orbitex", "Tundra", "Helios", "Marlow",
           "Quokka", "Zephyr", "Valora", "Brightwell", "Nordhaus", "Solenne", "Karamba", "Ostrava")
_PRODUCT_ADJECTIVES = ("Classic", "Ultra", "Compact", "Eco", "Pro", "Smart", "Vintage", "Nordic", "Urban", "Deluxe",
                       "Mini", "Solar", "Wireless", "Ergonomic", "Foldable")
_PRODUCT_NOUNS = ("Chair", "Lamp", "Backpack", "Kettle", "Headphones", "Desk", "Bicycle", "Watch", "Blender",
                  "Jacket", "Sneakers", "Tent", "Camera", "Notebook", "Speaker", "Mug", "Drill", "Vacuum Cleaner",
                  "Sofa", "Phone Case", "Yoga Mat", "Coffee Grinder", "Monitor", "Keyboard")
_PRODUCT_CATEGORIES = ("Electronics > Audio > Headphones", "Home & Garden", "Furniture", "Sports & Outdoors",
                       "Kitchen > Small Appliances", "Women's Fashion", "Men > Jackets", "Office Supplies",
                       "Toys & Games", "Beauty", "Tools & Home Improvement", "Computers > Accessories",
                       "Küche & Haushalt", "Maison > Décoration", "Bikes", "Camping")
_COLORS = ("black", "white", "red", "navy", "olive", "grey", "sand", "teal", "orange", "forest green", "Schwarz",
           "bleu")
_MATERIALS = ("cotton", "stainless steel", "oak wood", "recycled plastic", "leather", "aluminium", "bamboo",
              "polyester", "glass")
_ADJECTIVES = ("Silent", "Last", "Hidden", "Broken", "Golden", "Endless", "Crimson", "Distant", "Forgotten",
               "Electric", "Wild", "Midnight", "Paper", "Northern", "Secret", "Little")
_NOUNS = ("River", "Summer", "Empire", "Signal", "Garden", "Voyage", "Harbor", "Night", "Letter", "Kingdom",
          "Mirror", "Island", "Machine", "Orchard", "Frontier", "Winter", "Compass", "Lighthouse")
_TOPICS = ("Coffee", "Architecture", "Climate", "Bees", "Chess", "the Ocean", "Jazz", "Bread", "Typography",
           "Mountains", "Memory", "Cities")
_GENRES = {
    "movie": ("Drama", "Comedy", "Thriller", "Documentary", "Science Fiction", "Animation", "Romance", "Horror",
              "Action", "Crime"),
    "music": ("Rock", "Pop", "Jazz", "Hip-Hop", "Electronic", "Classical", "Folk", "Metal", "Soul", "Indie"),
    "book": ("Fiction", "Mystery", "Biography", "Science Fiction", "Fantasy", "History", "Cookbooks", "Poetry",
             "Self-Help", "Children's Books"),
}
_CUISINES = ("Italian", "Japanese", "Mexican", "Indian", "French", "Thai", "Lebanese", "Greek", "Vegan", "Korean",
             "Spanish", "Vietnamese", "German", "Peruvian")
_DISHES = ("Lemon Risotto", "Spicy Ramen", "Chickpea Curry", "Ratatouille", "Fish Tacos", "Shakshuka", "Pad Thai",
           "Apple Crumble", "Gazpacho", "Bibimbap", "Moussaka", "Paella", "Banana Bread", "Pumpkin Soup",
           "Chocolate Chip Cookies", "Beef Stroganoff", "Caesar Salad", "Lasagna", "Falafel Wraps", "Tiramisu")
_DISH_PREFIXES = ("Easy", "Quick", "Classic", "Grandma's", "The Best", "Healthy", "Vegan", "One-Pot", "Homemade",
                  "Crispy")
_GARNISHES = ("Fresh Herbs", "Garlic Bread", "Lemon Yoghurt", "Roasted Vegetables", "Wild Rice", "Parmesan")
_RECIPE_CATEGORIES = ("Dessert", "Main Course", "Breakfast", "Appetizer", "Side Dish", "Snack", "Soup", "Salad",
                      "Drinks", "Baking", "Hauptgericht", "Plat principal")
_INGREDIENTS = ("200 g flour", "2 eggs", "100 ml milk", "1 tbsp olive oil", "2 cloves garlic", "1 onion",
                "400 g canned tomatoes", "1 tsp salt", "250 g butter", "150 g sugar", "1 cup rice", "300 g chicken",
                "1 lemon", "a pinch of pepper", "2 carrots", "100 g parmesan")
_STEPS = ("Preheat the oven to 180°C", "Chop the onion and garlic", "Mix the flour and sugar",
          "Whisk the eggs with the milk", "Fry the onion until golden", "Simmer for 20 minutes",
          "Bake for 25 minutes", "Season with salt and pepper", "Let it cool before serving",
          "Stir in the cheese", "Serve with fresh herbs")
_EVENT_KINDS = ("Jazz Festival", "Tech Conference", "Food Market", "Marathon", "Book Fair", "Design Week",
                "Film Festival", "Startup Meetup", "Wine Tasting", "Open Air Concert", "Yoga Retreat", "Comedy Night",
                "Workshop: Watercolour Basics", "Christmas Market")
_VENUE_KINDS = ("Convention Center", "Arena", "Public Library", "Botanical Garden", "Old Town Hall",
                "Harbour Pavilion", "City Museum", "Concert Hall", "Jazz Club", "Community Center")
_PLACE_KINDS = ("Botanical Garden", "Old Town Square", "City Park", "Castle", "Cathedral", "Lighthouse",
                "Observation Deck", "Lake Promenade", "Market Hall", "Zoo")
_MUSEUM_KINDS = ("Museum of Modern Art", "Natural History Museum", "Museum of Science and Technology",
                 "Maritime Museum", "Toy Museum", "City History Museum", "Photography Museum", "Design Museum")
_SHOPS = ("Bakery", "Books", "Hardware", "Flowers", "Bikes", "Pharmacy", "Dental Clinic", "Hair Salon",
          "Auto Repair", "Optician", "Law Office", "Yoga Studio", "Pet Shop", "Plumbing Services")
_RESTAURANT_WORDS = ("Golden Spoon", "Blue Door", "Olive Tree", "Red Lantern", "Salt & Pepper", "Little Fig",
                     "Copper Pot", "Wild Thyme")
_HOTEL_WORDS = ("Grand", "Park", "Central", "Riverside", "Boutique", "Plaza", "Garden", "Royal", "Harbour",
                "Alpine")
_JOB_TITLES = ("Data Engineer", "Barista", "Store Manager", "Software Developer", "Accountant", "Registered Nurse",
               "Sales Associate", "UX Designer", "Warehouse Operative", "Chef de Partie", "Marketing Manager",
               "Customer Service Representative", "Electrician", "Project Manager", "HR Generalist",
               "Truck Driver", "Teacher", "Pharmacist")
_SENIORITY = ("Senior", "Junior", "Lead", "Head of", "Trainee", "Principal")
_EMPLOYMENT_TYPES = ("FULL_TIME", "PART_TIME", "CONTRACTOR", "TEMPORARY", "INTERN", "Full-time", "Part-time",
                     "Vollzeit", "Teilzeit")
_INDUSTRIES = ("Information Technology", "Healthcare", "Retail", "Hospitality", "Logistics", "Finance",
               "Education", "Manufacturing", "Construction")
_TEAM_NAMES = ("United", "City", "Rovers", "Wolves", "Lions", "Eagles", "Sharks", "Bulls", "Athletic", "Rangers",
               "Tigers", "Falcons")
_SPORTS = ("Football", "Basketball", "Ice Hockey", "Handball", "Volleyball", "Baseball", "Rugby", "Tennis")
_LEAGUES = ("Premier League", "Bundesliga", "La Liga", "Serie A", "NBA", "NHL", "Eredivisie", "EuroLeague",
            "Major League Soccer")
_BAND_WORDS = ("Silver", "Velvet", "Neon", "Paper", "Electric", "Hollow", "Crystal", "Midnight", "Wandering",
               "Static")
_BAND_NOUNS = ("Lanterns", "Foxes", "Echoes", "Tides", "Machines", "Owls", "Satellites", "Pilots", "Ghosts",
               "Rivers")
_SONG_WORDS = ("Midnight Drive", "Paper Moon", "Golden Hour", "Static Hearts", "Northern Lights", "Slow Motion",
               "Runaway", "Satellite", "Blue Hours", "Carousel", "Wildfire", "Afterglow", "Home Again",
               "Glass Houses", "Fever Dream")
_RECORD_LABELS = ("Northside Records", "Blue Harbor Music", "Velvet Tone", "Echo Park Recordings",
                  "Sundial Records", "Atlas Sound")
_PUBLISHERS = ("Penguin Random House", "HarperCollins", "Suhrkamp", "Gallimard", "Harbor Press", "Cedar Books",
               "North Star Publishing", "Editorial Sol", "Lumen Verlag")
_UNIVERSITIES = ("University of Vienna", "Technical University of Munich", "Sorbonne University",
                 "University of Amsterdam", "University of Toronto", "Trinity College Dublin", "Stanford University",
                 "University of Manchester", "Universidad Complutense de Madrid", "Politecnico di Milano",
                 "Massachusetts Institute of Technology", "Universität Zürich", "University of Tokyo",
                 "Jagiellonian University")
_SERIES_BOOK = ("The Ember Trilogy", "Silent River Series", "Chronicles of the North", "The Harbor Mysteries",
                "Inspector Lenz", "Star Compass Saga")
_SERIES_TV = ("Dark Harbor", "The Lighthouse Keepers", "Northern Precinct", "Kitchen Stories", "Wild Frontier",
              "Signal Lost", "The Orchard")
_AMENITIES = ("Free WiFi", "Swimming pool", "Free parking", "Wheelchair accessible", "Air conditioning", "Spa",
              "Fitness center", "Restaurant", "Bar", "24-hour front desk", "Airport shuttle", "Pet friendly",
              "Sauna", "Garden", "Cloakroom", "Audio guide")
_PAYMENTS = ("Cash", "Credit Card", "Visa", "Mastercard", "American Express", "PayPal", "Debit Card",
             "Apple Pay", "EC-Karte", "Bitcoin", "Invoice")
_LANGUAGES = (("en", "English", "en-US"), ("de", "German", "de-DE"), ("fr", "French", "fr-FR"),
              ("es", "Spanish", "es-ES"), ("it", "Italian", "it-IT"), ("nl", "Dutch", "nl-NL"),
              ("pt", "Portuguese", "pt-BR"), ("ja", "Japanese", "ja-JP"), ("pl", "Polish", "pl-PL"),
              ("sv", "Swedish", "sv-SE"))
_LANGUAGE_LOCAL = {"en": "English", "de": "Deutsch", "fr": "Français", "es": "Español", "it": "Italiano",
                   "nl": "Nederlands", "pt": "Português", "ja": "日本語", "pl": "Polski", "sv": "Svenska"}
_UNIT_CODES = ("C62", "KGM", "MTR", "LTR", "H87", "GRM", "CMT", "DAY", "MTK", "PCE", "SET")
_UNIT_TEXTS = ("piece", "kg", "per item", "pack", "litre", "m²", "set", "pair", "Stück", "pièce", "box of 12")
_AGE_RANGES = ("18-", "7-12", "3+", "16-99", "0-6", "12+", "18+", "6-10", "21-")
_AUDIENCES = ("Adults", "Children", "Families", "Students", "Professionals", "Seniors", "Teens", "Beginners",
              "Developers", "Kids and parents")
_WARRANTIES = ("2 years manufacturer warranty", "24 months", "Lifetime warranty", "1 Jahr Garantie",
               "90-day limited warranty", "3 years parts and labour", "12 months", "garantie 2 ans",
               "5-year warranty on frame")
_DELIVERY = ("http://purl.org/goodrelations/v1#DeliveryModeMail", "http://purl.org/goodrelations/v1#DHL",
             "http://purl.org/goodrelations/v1#UPS", "http://purl.org/goodrelations/v1#DeliveryModePickUp",
             "DeliveryModeFreight", "OnSitePickup", "ParcelService", "DHL", "FedEx", "Standard shipping")
_CREDENTIALS = ("Bachelor's degree", "bachelor degree", "High school diploma", "Master's degree in Computer Science",
                "Completed apprenticeship", "PhD", "Associate degree", "Abgeschlossene Berufsausbildung",
                "Professional certificate", "BSc in Accounting or equivalent")
_EXPERIENCE = ("3+ years of experience in software development", "At least 2 years experience",
               "Minimum 5 years in sales", "No experience required", "1-2 years in a similar role",
               "Mehrjährige Berufserfahrung", "36 months", "Experience with SQL and Python",
               "monthsOfExperience: 24")
_OCCUPATION_CODES = ("15-1252.00", "43-4051.00", "29-1141.00", "35-2014.00", "13-2011.00", "41-2031.00",
                     "2512", "5223", "3343", "11-2021.00", "53-3032.00")
_OCCUPATION_NAMES = ("Software Developers", "Customer Service Representatives", "Registered Nurses",
                     "Cooks, Restaurant", "Accountants and Auditors", "Retail Salespersons")
_DIETS = ("VeganDiet", "VegetarianDiet", "GlutenFreeDiet", "LowCalorieDiet", "LowLactoseDiet", "HalalDiet",
          "DiabeticDiet", "LowFatDiet", "KosherDiet")
_REVIEWS = ("Great quality, would buy again.", "Arrived late but works as described.",
            "Friendly staff and a lovely atmosphere.", "Too expensive for what it is.", "Exactly what I needed!",
            "Stopped working after {n} weeks.", "Solid, simple and well made.", "Not as shown in the photos.",
            "The room was clean and quiet, breakfast was excellent.", "Food was cold, service slow.",
            "Sehr zufrieden, gerne wieder.", "Rien à redire, parfait.", "{n}/5 - would recommend to friends.")
_CONTENT_RATINGS = {"movie": ("G", "PG", "PG-13", "R", "NC-17", "FSK 12", "FSK 16", "12A", "15", "16+"),
                    "tv": ("TV-Y", "TV-G", "TV-PG", "TV-14", "TV-MA", "FSK 12", "12+", "16+")}
_KEYWORDS = ("easy, quick, weeknight", "summer, grill, bbq", "travel, city guide", "design, minimalism",
             "healthy, vegan, lunch", "history, architecture", "photography, landscape", "baking, dessert")
_HEADLINES = ("10 Things You Didn't Know About {topic}", "A Short Guide to {topic}", "Why {topic} Matters",
              "Interview: Living With {topic}", "The Future of {topic}")
_DESCRIPTION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "product": ("The {name} combines {adj} design with everyday durability.",
                "{name} - {adj} and reliable. Free shipping on orders over 50.",
                "Made from {material}, this {noun} is built to last. Available in {color}.",
                "Our best-selling {noun}: {adj}, lightweight and easy to clean."),
    "book": ("A {adj} novel about a family, a secret and a {noun2} that changes everything.",
             "The long-awaited sequel, set in {city}.", "An essential guide to {topic} for beginners.",
             "Winner of the {year} Book Prize."),
    "article": ("In this post we look at {topic} and what it means for {city}.",
                "Notes from a weekend in {city}.", "Photo series: {topic} in {year}."),
    "event": ("Join us for the {year} edition in {city}!", "An evening of live music and good food.",
              "Tickets are limited - register now.", "Talks, workshops and networking for everyone interested "
              "in {topic}."),
    "hotel": ("Our {adj} rooms are just minutes from the centre of {city}.",
              "Family-run hotel with breakfast buffet and free WiFi.", "Modern hotel near {city} central station."),
    "job": ("We are looking for a motivated {job} to join our team in {city}.",
            "Your tasks: planning, coordination and reporting. We offer a competitive salary.",
            "Join a fast-growing company. Flexible hours, remote work possible."),
    "business": ("Your local {shop} in {city} since {year}.", "Friendly service and fair prices.",
                 "Family business with over {n} years of experience."),
    "movie": ("A {adj} story of love and loss in {city}.", "When a stranger arrives, nothing stays the same.",
              "Based on a true story."),
    "museum": ("Explore {n} years of {topic} in the heart of {city}.", "Permanent and temporary exhibitions.",
               "Free entry on the first Sunday of every month."),
    "album": ("The debut album, recorded in {city}.", "Remastered edition with {n} bonus tracks."),
    "person": ("{job} based in {city}.", "Award-winning author and speaker on {topic}.",
               "Passionate about {topic} and good coffee."),
    "place": ("A popular spot for locals and tourists in {city}.", "Dating back to {year}, it offers views over "
              "{city}.", "Ideal for a walk on a sunny afternoon."),
    "recipe": ("This {adj} recipe is ready in under an hour.", "Perfect for a cosy weekend dinner.",
               "A family favourite, easy to make ahead."),
    "restaurant": ("Authentic {cuisine} cuisine in the heart of {city}.", "Seasonal menu with local produce.",
                   "Cosy restaurant with a large terrace."),
    "sports": ("Matchday {n} of the season.", "Kick-off in {city}. Tickets at the box office.",
               "Derby time: don't miss it!"),
    "episode": ("The team faces its greatest challenge yet.", "A secret from the past comes to light.",
                "Season finale."),
}
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_TLDS = ("com", "de", "co.uk", "fr", "nl", "es", "it", "net", "org", "com.au", "ca", "io")
_MAIL_DOMAINS = ("gmail.com", "outlook.com", "yahoo.com", "web.de", "gmx.net", "orange.fr", "hotmail.co.uk",
                 "icloud.com", "proton.me")
_TRANSLIT = str.maketrans({"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "ß": "ss", "æ": "ae", "'": "", "&": "and"})


@lru_cache(maxsize=4096)
def _slug(text: str, sep: str = "") -> str:
    """ASCII slug of a name for domains and e-mail local parts (Søren Müller -> sorenmuller)."""
    text = unicodedata.normalize("NFKD", text.translate(_TRANSLIT))
    words = ["".join(ch for ch in word if ch.isascii() and ch.isalnum()).lower() for word in text.split()]
    return sep.join(word for word in words if word)


# ----------------------------------------------------------------------------------------------------------------
# Site style and rows
# ----------------------------------------------------------------------------------------------------------------

class _Style:
    """How one website writes its values: its country, its format per value family, heterogeneity, missingness."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        home = rng.choice(_CITIES)
        if rng.random() < 0.75:
            self.cities = [city for city in _CITIES if city.country_code == home.country_code]
        else:
            self.cities = list(_CITIES)
        self.home = home
        self.hetero = rng.choice(HETEROGENEITY_RATES)
        self.missing = rng.choice(MISSING_RATES)
        self.decimal_comma = home.language not in ("en", "ja") and rng.random() < 0.6
        self.site = f"{_slug(rng.choice(_ORG_WORDS) + rng.choice(_BRANDS))}.{rng.choice(_TLDS)}"
        self.scheme = rng.choice(("https://www.", "https://", "http://www."))
        self._formats: dict[str, int] = {}

    def pick(self, family: str, n: int) -> int:
        """The site's format index for a value family, or (with probability ``hetero``) another one."""
        if family not in self._formats:
            self._formats[family] = self.rng.randrange(n)
        if self.hetero and self.rng.random() < self.hetero:
            return self.rng.randrange(n)
        return self._formats[family]

    def decimal(self, value: float, decimals: int) -> str:
        text = f"{value:.{decimals}f}"
        return text.replace(".", ",") if self.decimal_comma else text


class _Row:
    """One row being drawn: shared, lazily drawn context so related cells agree."""

    def __init__(self, style: _Style, entity: str, index: int) -> None:
        self.style = style
        self.rng = style.rng
        self.entity = entity
        self.index = index
        self.cache: dict[str, Any] = {}

    def get(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    @property
    def city(self) -> _City:
        return self.get("city", lambda: self.rng.choice(self.style.cities))

    @property
    def person(self) -> tuple[str, str]:
        return self.get("person", lambda: (self.rng.choice(_GIVEN), self.rng.choice(_FAMILY)))

    @property
    def org(self) -> str:
        return self.get("org", lambda: _organization_name(self.rng))

    @property
    def brand(self) -> str:
        return self.get("brand", lambda: self.rng.choice(_BRANDS))

    @property
    def teams(self) -> tuple[str, str]:
        def draw() -> tuple[str, str]:
            home, away = self.rng.sample(_CITIES, 2)
            return (f"{home.name} {self.rng.choice(_TEAM_NAMES)}", f"{away.name} {self.rng.choice(_TEAM_NAMES)}")
        return self.get("teams", draw)


Generator = Callable[[_Row, dict[str, Any]], str]


def _organization_name(rng: random.Random) -> str:
    style = rng.randrange(4)
    if style == 0:
        return f"{rng.choice(_FAMILY)} & Sons"
    if style == 1:
        return f"{rng.choice(_ORG_WORDS)} {rng.choice(_ORG_NOUNS)} {rng.choice(_ORG_SUFFIXES)}"
    if style == 2:
        return f"{rng.choice(_ORG_WORDS)}{rng.choice(_ORG_NOUNS).lower()}"
    return f"{rng.choice(_FAMILY)} {rng.choice(_ORG_NOUNS)}"


def _one_of(rng: random.Random, *makers: Callable[[], str]) -> str:
    """One of several ways to write a value; only the chosen one is drawn (the others cost no random draws)."""
    return makers[rng.randrange(len(makers))]()


def _pattern(rng: random.Random, pattern: str) -> str:
    return "".join(str(rng.randint(0, 9)) if ch == "#" else rng.choice(string.ascii_uppercase) if ch == "@" else ch
                   for ch in pattern)


def _digits(rng: random.Random, n: int) -> str:
    return f"{rng.randrange(10 ** n):0{n}d}"


# ----------------------------------------------------------------------------------------------------------------
# Formats
# ----------------------------------------------------------------------------------------------------------------

_DATE_FORMATS: tuple[Callable[[date], str], ...] = (
    lambda d: d.isoformat(),
    lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}",
    lambda d: f"{d.month:02d}/{d.day:02d}/{d.year}",
    lambda d: f"{d.day:02d}/{d.month:02d}/{d.year}",
    lambda d: f"{_MONTHS[d.month - 1]} {d.day}, {d.year}",
    lambda d: f"{d.day} {_MONTHS[d.month - 1]} {d.year}",
    lambda d: f"{d.day} {_MONTHS[d.month - 1][:3]} {d.year}",
    lambda d: f"{d.year}/{d.month:02d}/{d.day:02d}",
)
"""ISO, 31.12.2021, 12/31/2021, 31/12/2021, December 31, 2021, 31 December 2021, 31 Dec 2021, 2021/12/31."""


def _hour12(t: datetime) -> str:
    hour = t.hour % 12 or 12
    return f"{hour}:{t.minute:02d} {'PM' if t.hour >= 12 else 'AM'}"


_DATETIME_FORMATS: tuple[Callable[[datetime, str], str], ...] = (
    lambda t, tz: t.strftime("%Y-%m-%dT%H:%M:%S") + tz,
    lambda t, tz: t.strftime("%Y-%m-%dT%H:%M:%SZ"),
    lambda t, tz: t.strftime("%Y-%m-%dT%H:%M"),
    lambda t, tz: t.strftime("%Y-%m-%d %H:%M:%S"),
    lambda t, tz: f"{t.month:02d}/{t.day:02d}/{t.year} {_hour12(t)}",
    lambda t, tz: f"{t.day:02d}.{t.month:02d}.{t.year} {t.hour:02d}:{t.minute:02d}",
    lambda t, tz: f"{_MONTHS[t.month - 1]} {t.day}, {t.year} at {_hour12(t).lower()}",
    lambda t, tz: f"{_WEEKDAYS[t.weekday()][:3]}, {t.day:02d} {_MONTHS[t.month - 1][:3]} {t.year} "
                  f"{t.hour:02d}:{t.minute:02d}:00 GMT",
)

_TIME_FORMATS: tuple[Callable[[int, int], str], ...] = (
    lambda h, m: f"{h:02d}:{m:02d}",
    lambda h, m: f"{h:02d}:{m:02d}:00",
    lambda h, m: f"{h % 12 or 12}:{m:02d} {'PM' if h >= 12 else 'AM'}",
    lambda h, m: f"{h % 12 or 12}:{m:02d}{'pm' if h >= 12 else 'am'}",
    lambda h, m: f"{h}h{m:02d}",
    lambda h, m: f"T{h:02d}:{m:02d}:00",
)


def _duration_text(minutes: int, seconds: int, style: int) -> str:
    """A duration in one of several web formats (ISO 8601 and human forms)."""
    hours, mins = divmod(minutes, 60)
    if style == 0:
        iso = "PT" + (f"{hours}H" if hours else "") + (f"{mins}M" if mins or not (hours or seconds) else "")
        return iso + (f"{seconds}S" if seconds else "")
    if style == 1:
        return f"PT{minutes}M" + (f"{seconds}S" if seconds else "")
    if style == 2:
        return f"{minutes} min" if not seconds else f"{minutes} min {seconds} sec"
    if style == 3:
        return f"{hours}:{mins:02d}:{seconds:02d}" if hours else f"{mins}:{seconds:02d}"
    if style == 4:
        parts = ([f"{hours} hour{'s' if hours != 1 else ''}"] if hours else []) + (
            [f"{mins} minute{'s' if mins != 1 else ''}"] if mins or not hours else [])
        return " ".join(parts)
    return (f"{hours}h " if hours else "") + f"{mins}m" + (f" {seconds}s" if seconds else "")


_CURRENCY_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£", "JPY": "¥", "CHF": "CHF", "CAD": "CA$", "AUD": "A$",
                     "BRL": "R$", "PLN": "zł", "SEK": "kr", "DKK": "kr.", "CZK": "Kč", "MXN": "MX$"}


def _money(row: _Row, amount: float, family: str = "price") -> str:
    """A price as the site writes it: plain number, with symbol or code, before or after."""
    style = row.style
    currency = row.city.currency
    decimals = 0 if currency == "JPY" or (amount >= 100 and row.rng.random() < 0.3) else 2
    number = f"{amount:,.{decimals}f}"
    if style.decimal_comma:
        number = number.replace(",", "\x00").replace(".", ",").replace("\x00", ".")
    symbol = _CURRENCY_SYMBOLS.get(currency, currency)
    choice = style.pick(family, 6)
    if choice == 0:
        return number.replace(",", "") if not style.decimal_comma else number.replace(".", "")
    if choice == 1:
        return f"{symbol}{number}"
    if choice == 2:
        return f"{number} {symbol}"
    if choice == 3:
        return f"{number} {currency}"
    if choice == 4:
        return f"{currency} {number}"
    return f"{amount:.{decimals}f}"


def _price_amount(row: _Row) -> float:
    base = {"Book": 18.0, "MusicAlbum": 14.0, "Event": 35.0, "SportsEvent": 45.0}.get(row.entity, 80.0)
    amount = base * row.rng.lognormvariate(0.0, 0.8)
    if row.rng.random() < 0.6:
        amount = round(amount) - 0.01 if amount > 1 else amount
    if row.city.currency in ("JPY",):
        amount *= 150
    elif row.city.currency in ("SEK", "DKK", "CZK", "MXN"):
        amount *= 10
    return max(round(amount, 2), 0.5)


def _date_between(rng: random.Random, first: int, last: int) -> date:
    start, end = date(first, 1, 1).toordinal(), date(last, 12, 31).toordinal()
    return date.fromordinal(rng.randint(start, end))


def _enum(row: _Row, family: str, terms: tuple[str, ...], plain: tuple[str, ...] | None = None) -> str:
    """A Schema.org enumeration member written as ``InStock``, a schema.org URL, or a plain-language form."""
    index = row.rng.randrange(len(terms))
    term = terms[index]
    style = row.style.pick(family, 4)
    if style == 0:
        return term
    if style == 1:
        return f"https://schema.org/{term}"
    if style == 2:
        return f"http://schema.org/{term}"
    return plain[index] if plain else term


# ----------------------------------------------------------------------------------------------------------------
# Generators (name -> function(row, args) -> cell text); the label map refers to them by name
# ----------------------------------------------------------------------------------------------------------------

def _person_name(row: _Row, given: str, family: str) -> str:
    style = row.style.pick("person_name", 5)
    if style == 1:
        return f"{family}, {given}"
    if style == 2:
        return f"{given[0]}. {family}"
    if style == 3:
        return f"{row.rng.choice(_TITLES)} {given} {family}"
    if style == 4:
        return f"{given} {family}".upper() if row.rng.random() < 0.3 else f"{given} {family}"
    return f"{given} {family}"


def g_person_name(row: _Row, args: dict[str, Any]) -> str:
    return _person_name(row, *row.person)


def g_person_ref(row: _Row, args: dict[str, Any]) -> str:
    count = row.rng.choice((1, 2, 2, 3, 4)) if args.get("many") else (1 if row.rng.random() < 0.9 else 2)
    names = [_person_name(row, row.rng.choice(_GIVEN), row.rng.choice(_FAMILY)) for _ in range(count)]
    return ", ".join(names) if row.style.pick("list_sep", 2) == 0 else "; ".join(names)


def g_given_name(row: _Row, args: dict[str, Any]) -> str:
    return row.person[0]


def g_family_name(row: _Row, args: dict[str, Any]) -> str:
    return row.person[1]


def g_product_name(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    name = f"{rng.choice(_PRODUCT_ADJECTIVES)} {rng.choice(_PRODUCT_NOUNS)}"
    style = row.style.pick("product_name", 4)
    if style == 0:
        name = f"{row.brand} {name}"
    elif style == 1:
        name = f"{name} - {rng.choice(_COLORS)}"
    elif style == 2:
        name = f"{row.brand} {name} {rng.choice(('XL', 'Pro', 'S', '2.0', 'Mk II', '500'))}"
    else:
        name = f"{name}, {rng.randint(2, 12) * 5} cm"
    return name


def g_brand(row: _Row, args: dict[str, Any]) -> str:
    brand = row.brand
    return brand.upper() if row.style.pick("brand_case", 4) == 0 else brand


def g_product_model(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    style = row.style.pick("model", 4)
    if style == 0:
        return f"{_pattern(rng, '@@')}-{rng.randint(100, 9999)}"
    if style == 1:
        return f"Model {rng.randint(1, 9)}{rng.choice('ABCSX')}"
    if style == 2:
        return f"{row.brand[:3].upper()}{rng.randint(10, 999)}{rng.choice(('', 'i', 'X', 'Plus'))}"
    return f"{rng.choice(_PRODUCT_ADJECTIVES)} {rng.randint(2, 9)}{rng.choice(('00', '50', ''))}"


def g_product_category(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_PRODUCT_CATEGORIES)


def g_color(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_COLORS)


def g_material(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_MATERIALS)


def g_price(row: _Row, args: dict[str, Any]) -> str:
    return _money(row, _price_amount(row))


def g_currency(row: _Row, args: dict[str, Any]) -> str:
    currency = row.city.currency
    style = row.style.pick("currency", 5)
    if style == 3:
        return _CURRENCY_SYMBOLS.get(currency, currency)
    if style == 4:
        return currency.lower()
    return currency


def g_price_range(row: _Row, args: dict[str, Any]) -> str:
    rng, currency = row.rng, row.city.currency
    symbol = _CURRENCY_SYMBOLS.get(currency, currency)
    low = rng.choice((5, 8, 10, 12, 15, 20, 25, 30, 40, 60, 80, 120))
    high = low * rng.choice((2, 3, 4))
    if args.get("kind") == "tickets":
        style = row.style.pick("ticket_price", 3)
        if style == 0:
            return f"Adults {symbol}{low}, children free"
        if style == 1:
            return f"{low}-{high} {currency}"
        return f"from {symbol}{low}"
    style = row.style.pick("price_range", 5)
    if style == 0:
        return "$" * rng.randint(1, 4)
    if style == 1:
        return (symbol if len(symbol) == 1 else "$") * rng.randint(1, 4)
    if style == 2:
        return f"{symbol}{low}-{symbol}{high}"
    if style == 3:
        return f"{symbol}{low} - {symbol}{high}"
    return f"{low}-{high} {currency}"


def g_monetary_amount(row: _Row, args: dict[str, Any]) -> str:
    rng, currency = row.rng, row.city.currency
    symbol = _CURRENCY_SYMBOLS.get(currency, currency)
    yearly = rng.randrange(24_000, 140_000, 1000)
    hourly = rng.randrange(12, 60)
    style = row.style.pick("salary", 6)
    if style == 0:
        return f"{yearly:,} {currency} per year"
    if style == 1:
        return f"{symbol}{hourly} - {symbol}{hourly + rng.randint(2, 10)} / hour"
    if style == 2:
        return f"{currency} {yearly:,}-{yearly + rng.randrange(5000, 20000, 1000):,}"
    if style == 3:
        return str(yearly)
    if style == 4:
        return f"{symbol}{yearly // 12:,} per month".replace(",", ".")
    return f"{yearly // 1000}k {currency}/yr"


def g_number(row: _Row, args: dict[str, Any]) -> str:
    value = row.rng.uniform(float(args.get("lo", 0.0)), float(args.get("hi", 100.0)))
    return row.style.decimal(value, int(args.get("decimals", 2)))


def g_integer(row: _Row, args: dict[str, Any]) -> str:
    lo, hi = int(args.get("lo", 0)), int(args.get("hi", 1000))
    value = row.rng.randint(lo, hi) if hi - lo < 1000 else int(row.rng.lognormvariate(0, 2) * (hi - lo) / 50) + lo
    value = min(value, hi)
    if value >= 10_000 and row.style.pick("thousands", 3) == 0:
        return f"{value:,}"
    return str(value)


def g_quantitative(row: _Row, args: dict[str, Any]) -> str:
    rng, kind = row.rng, args.get("kind")
    if kind == "servings":
        n = rng.randint(1, 12)
        return (f"{n} servings", f"Serves {n}", str(n), f"{n * 4} cookies", f"{n} portions")[
            row.style.pick("servings", 5)]
    if kind == "rooms":
        n = rng.randint(8, 450)
        return (f"{n} rooms", str(n), f"{n} Zimmer")[row.style.pick("rooms", 3)]
    n = rng.randint(0, 250)
    return (str(n), f"{n} in stock", f"Only {min(n, 9)} left", f"{n} units")[row.style.pick("stock", 4)]


def g_product_weight(row: _Row, args: dict[str, Any]) -> str:
    kilos = row.rng.uniform(0.05, 30.0)
    style = row.style.pick("weight", 5)
    if style == 0:
        return f"{row.style.decimal(kilos, 2)} kg"
    if style == 1:
        return f"{int(kilos * 1000)} g"
    if style == 2:
        return f"{kilos * 2.2046:.1f} lbs"
    if style == 3:
        return f"{kilos * 35.27:.0f} oz"
    return f"{row.style.decimal(kilos, 1)}kg"


def g_mass(row: _Row, args: dict[str, Any]) -> str:
    grams = row.rng.uniform(0.5, 60.0)
    style = row.style.pick("mass", 4)
    return (f"{grams:.0f} g", f"{grams:.1f} grams", f"{grams:.0f}g", f"{grams / 28.35:.1f} oz")[style]


def g_energy(row: _Row, args: dict[str, Any]) -> str:
    kcal = row.rng.randint(80, 950)
    style = row.style.pick("energy", 5)
    return (f"{kcal} kcal", f"{kcal} calories", f"{round(kcal * 4.184)} kJ", str(kcal), f"{kcal} Cal")[style]


def g_distance(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    if args.get("kind") == "height":
        cm = rng.randint(150, 202)
        style = row.style.pick("height", 4)
        if style == 0:
            return f"{cm} cm"
        if style == 1:
            return f"{row.style.decimal(cm / 100, 2)} m"
        inches = round(cm / 2.54)
        return f"{inches // 12}'{inches % 12}\"" if style == 2 else f"{inches // 12} ft {inches % 12} in"
    cm = rng.uniform(2, 220)
    style = row.style.pick("dimension", 4)
    return (f"{cm:.0f} cm", f"{cm / 2.54:.1f} in", f"{cm * 10:.0f} mm", f"{row.style.decimal(cm / 100, 2)} m")[style]


def g_date(row: _Row, args: dict[str, Any]) -> str:
    value = _date_between(row.rng, int(args.get("first", 2000)), int(args.get("last", 2024)))
    return _DATE_FORMATS[row.style.pick("date", len(_DATE_FORMATS))](value)


def g_datetime(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    previous = row.cache.get(f"datetime:{args.get('after')}") if args.get("after") else None
    if isinstance(previous, datetime):
        value = previous + timedelta(hours=rng.choice((2, 3, 4, 24, 48, 72, 24 * 30)))
    else:
        day = _date_between(rng, int(args.get("first", 2019)), int(args.get("last", 2025)))
        value = datetime(day.year, day.month, day.day, rng.choice((9, 10, 14, 18, 19, 20, 21)),
                         rng.choice((0, 0, 15, 30, 45)))
    row.cache[f"datetime:{args.get('header')}"] = value
    offset = {"en": rng.choice(("-05:00", "+00:00", "-08:00")), "ja": "+09:00"}.get(row.city.language, "+01:00")
    return _DATETIME_FORMATS[row.style.pick("datetime", len(_DATETIME_FORMATS))](value, offset)


def g_time(row: _Row, args: dict[str, Any]) -> str:
    rng, kind = row.rng, args.get("kind")
    hour = {"checkin": rng.choice((14, 15, 16)), "checkout": rng.choice((10, 11, 12)),
            "opens": rng.choice((7, 8, 9, 10, 11, 12)), "closes": rng.choice((18, 20, 22, 23))}.get(
        kind, rng.choice((17, 18, 19, 20)))
    minute = rng.choice((0, 0, 0, 30, 15))
    return _TIME_FORMATS[row.style.pick("time", len(_TIME_FORMATS))](hour, minute)


def g_duration(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    lo, hi = int(args.get("lo", 5)), int(args.get("hi", 120))
    if args.get("unit") == "track":
        minutes, seconds = rng.randint(lo, hi), rng.randint(0, 59)
        style = row.style.pick("track_duration", 4)
        return _duration_text(minutes, seconds, (0, 3, 2, 5)[style])
    minutes = rng.randint(lo, hi)
    if hi <= 120 and rng.random() < 0.7:
        minutes = max(lo, 5 * round(minutes / 5))
    return _duration_text(minutes, 0, row.style.pick("duration", 6))


def g_day_of_week(row: _Row, args: dict[str, Any]) -> str:
    day = row.rng.choice(_WEEKDAYS)
    style = row.style.pick("weekday", 5)
    return (day, f"https://schema.org/{day}", f"http://schema.org/{day}", day[:2], day[:3])[style]


def g_opening_hours(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    opens, closes = rng.choice((7, 8, 9, 10, 11)), rng.choice((17, 18, 19, 20, 22))
    style = row.style.pick("opening_hours", 4)
    if style == 0:
        return f"{rng.choice(('Mo-Fr', 'Mo-Sa', 'Tu-Su', 'Mo-Su'))} {opens:02d}:00-{closes:02d}:00"
    if style == 1:
        return f"{rng.choice(('Mon-Fri', 'Mon-Sat', 'Daily'))} {opens}am-{closes - 12}pm"
    if style == 2:
        return f"Mo,Tu,We,Th,Fr {opens:02d}:00-{closes:02d}:00"
    return f"Mo-Fr {opens:02d}:00-{closes:02d}:00, Sa {opens + 1:02d}:00-14:00"


def g_work_hours(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    return _one_of(rng, lambda: f"{rng.choice((20, 30, 35, 38.5, 40))} hours per week", lambda: "Mon-Fri 9am-5pm",
                   lambda: f"Full-time, {rng.choice((38, 39, 40))} h/week", lambda: "Shift work",
                   lambda: "20-25 hrs/week", lambda: "Flexible working hours", lambda: "Vollzeit (40 Std./Woche)",
                   lambda: "8:00 - 16:30")


def g_street_address(row: _Row, args: dict[str, Any]) -> str:
    city, rng = row.city, row.rng

    def draw() -> str:
        street = rng.choice(_STREETS[city.language])
        number = str(rng.randint(1, 240)) + (rng.choice("abc") if rng.random() < 0.1 else "")
        return f"{number} {street}" if city.number_first else f"{street} {number}"
    return row.get("street", draw)


def g_postal_code(row: _Row, args: dict[str, Any]) -> str:
    return row.get("postal", lambda: _pattern(row.rng, row.city.postal))


def g_locality(row: _Row, args: dict[str, Any]) -> str:
    city = row.city
    style = row.style.pick("locality", 4)
    if style == 1:
        return city.local_name
    if style == 2:
        return city.name.upper()
    return city.name


def g_region(row: _Row, args: dict[str, Any]) -> str:
    city = row.city
    return city.region_code if row.style.pick("region", 2) == 0 else city.region


def g_country(row: _Row, args: dict[str, Any]) -> str:
    # An address country follows the row's city; a nationality or country of origin can be any country.
    city = row.rng.choice(_COUNTRIES) if row.entity in ("Movie", "Person", "Product") else row.city
    style = row.style.pick("country", 4)
    return (city.country, city.country_code, city.country_local, city.country.upper())[style]


def g_postal_address(row: _Row, args: dict[str, Any]) -> str:
    city = row.city
    street = g_street_address(row, args)
    postal = g_postal_code(row, args)
    style = row.style.pick("address", 3)
    if city.country_code in ("US", "CA", "AU"):
        line = f"{street}, {city.name}, {city.region_code} {postal}"
    elif city.country_code == "GB":
        line = f"{street}, {city.name} {postal}"
    else:
        line = f"{street}, {postal} {city.local_name}"
    if style == 1:
        line += f", {city.country}"
    elif style == 2:
        line = line.replace(", ", " ")
    return line


def g_latitude(row: _Row, args: dict[str, Any]) -> str:
    value = row.get("lat", lambda: row.city.lat + row.rng.uniform(-0.08, 0.08))
    return row.style.decimal(value, row.style.pick("coord_decimals", 3) + 4)


def g_longitude(row: _Row, args: dict[str, Any]) -> str:
    value = row.get("lon", lambda: row.city.lon + row.rng.uniform(-0.08, 0.08))
    return row.style.decimal(value, row.style.pick("coord_decimals", 3) + 4)


def _phone(row: _Row, family: str) -> str:
    city, rng = row.city, row.rng
    subscriber = _digits(rng, city.subscriber_digits)
    area = city.area
    style = row.style.pick(family, 5)
    if city.calling_code == "+1":
        if style in (0, 1):
            return f"({area}) {subscriber[:3]}-{subscriber[3:]}"
        if style == 2:
            return f"{area}-{subscriber[:3]}-{subscriber[3:]}"
        if style == 3:
            return f"+1 {area} {subscriber[:3]} {subscriber[3:]}"
        return f"{area}.{subscriber[:3]}.{subscriber[3:]}"
    trunk = "" if area.startswith("0") or not area else "0"  # Rome's 06 keeps its 0; Copenhagen has no area
    if style == 0:
        return " ".join(part for part in (city.calling_code, area, subscriber) if part)
    if style == 1:
        return " ".join(part for part in (trunk + area, subscriber[:3], subscriber[3:]) if part)
    if style == 2:
        return f"{city.calling_code}{area}{subscriber}"
    if style == 3:
        if trunk:
            return f"{city.calling_code} ({trunk}){area} {subscriber}"
        return " ".join(part for part in (city.calling_code, area, subscriber) if part)
    return f"{trunk}{area}/{subscriber}" if area else f"{subscriber[:4]} {subscriber[4:]}"


def g_telephone(row: _Row, args: dict[str, Any]) -> str:
    return _phone(row, "phone")


def g_fax(row: _Row, args: dict[str, Any]) -> str:
    number = _phone(row, "phone")
    return f"Fax: {number}" if row.style.pick("fax_prefix", 3) == 0 else number


def g_email(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    if row.entity == "Person":
        given, family = row.person
        local = _one_of(rng, lambda: f"{_slug(given)}.{_slug(family)}", lambda: f"{_slug(given)[0]}{_slug(family)}",
                        lambda: f"{_slug(given)}{rng.randint(1, 99)}")
        domain = rng.choice(_MAIL_DOMAINS) if rng.random() < 0.6 else row.style.site
    else:
        local = rng.choice(("info", "contact", "hello", "booking", "office", "kontakt", "reservations", "jobs"))
        domain = row.style.site
    address = f"{local}@{domain}"
    return f"mailto:{address}" if row.style.pick("mailto", 4) == 0 else address


def _url(row: _Row, path: str) -> str:
    return f"{row.style.scheme}{row.style.site}/{path}"


def g_page_url(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    section = {"Product": "products", "Event": "events", "JobPosting": "jobs", "Recipe": "recipes",
               "Book": "books", "Movie": "movies", "Person": "team", "Hotel": "hotels"}.get(row.entity, "p")
    slug = _one_of(rng, lambda: f"{rng.randint(1000, 999999)}", lambda: f"item-{rng.randint(10, 9999)}",
                   lambda: f"{_slug(rng.choice(_NOUNS))}-{_slug(rng.choice(_ADJECTIVES))}-{rng.randint(1, 99)}")
    tail = ("", ".html", "/", f"?id={rng.randint(1, 9999)}")[row.style.pick("url_tail", 4)]
    return _url(row, f"{section}/{slug}{tail}")


def g_image_url(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    ext = ("jpg", "png", "webp", "jpeg")[row.style.pick("image_ext", 4)]
    style = row.style.pick("image_url", 3)
    if style == 0:
        return _url(row, f"media/catalog/{rng.randint(100, 99999)}.{ext}")
    if style == 1:
        return f"https://cdn.{row.style.site}/images/{_digits(rng, 8)}_{rng.choice(('large', 'front', 'main'))}.{ext}"
    return _url(row, f"wp-content/uploads/{rng.randint(2015, 2024)}/{rng.randint(1, 12):02d}/{_digits(rng, 5)}.{ext}")


def g_photo_url(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    style = row.style.pick("photo_url", 3)
    if style == 0:
        return _url(row, f"photos/{rng.choice(('IMG', 'DSC', 'P'))}_{_digits(rng, 4)}.jpg")
    if style == 1:
        return _url(row, f"uploads/{_digits(rng, 6)}-{rng.choice((1200, 800, 1024))}x"
                         f"{rng.choice((800, 600, 768))}.jpg")
    return f"https://images.{row.style.site}/photo/{_digits(rng, 7)}.jpeg"


def g_logo_url(row: _Row, args: dict[str, Any]) -> str:
    return _url(row, f"assets/{row.rng.choice(('logo', 'logo-header', 'brand'))}.{row.rng.choice(('png', 'svg'))}")


def g_menu_url(row: _Row, args: dict[str, Any]) -> str:
    return _url(row, row.rng.choice(("menu", "speisekarte.pdf", "menu.pdf", "carte", "our-menu/")))


def g_license_url(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(("https://creativecommons.org/licenses/by/4.0/", "https://creativecommons.org/licenses/"
                           "by-sa/4.0/", "http://creativecommons.org/licenses/by-nc/3.0/",
                           "https://creativecommons.org/publicdomain/zero/1.0/"))


def g_social_url(row: _Row, args: dict[str, Any]) -> str:
    handle = _slug(" ".join(row.person), "")
    return row.rng.choice((f"https://twitter.com/{handle}", f"https://www.linkedin.com/in/{handle}",
                           f"https://www.instagram.com/{handle}/", f"https://en.wikipedia.org/wiki/"
                           f"{row.person[0]}_{row.person[1]}"))


def g_identifier(row: _Row, args: dict[str, Any]) -> str:
    rng, kind = row.rng, args.get("kind")
    if kind == "gtin":
        digits = [rng.randint(0, 9) for _ in range(12)]
        check = (10 - sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10) % 10
        return "".join(map(str, digits + [check]))
    if kind == "isbn":
        digits = [9, 7, 8] + [rng.randint(0, 9) for _ in range(9)]
        check = (10 - sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10) % 10
        text = "".join(map(str, digits + [check]))
        return f"{text[:3]}-{text[3]}-{text[4:8]}-{text[8:12]}-{text[12]}" if row.style.pick("isbn", 2) else text
    if kind == "isrc":
        return f"{rng.choice(('US', 'GB', 'DE', 'FR', 'SE'))}{_pattern(rng, '@@@')}{rng.randint(70, 99)}" \
               f"{_digits(rng, 5)}"
    if kind == "job":
        return _one_of(rng, lambda: f"REQ-{rng.randint(2019, 2024)}-{_digits(rng, 4)}", lambda: _digits(rng, 6),
                       lambda: f"JOB{_digits(rng, 5)}")
    style = row.style.pick("sku", 3)
    if style == 0:
        return f"{_pattern(rng, '@@@')}-{rng.randint(100, 999)}-{rng.choice('ABCDEFGH')}"
    if style == 1:
        return _digits(rng, rng.choice((5, 6, 8)))
    return f"{row.brand[:2].upper()}{_digits(rng, 6)}"


def g_category_code(row: _Row, args: dict[str, Any]) -> str:
    code = row.rng.choice(_OCCUPATION_CODES)
    if row.style.pick("occupation", 3) == 2 and "." in code:
        return f"{code} {row.rng.choice(_OCCUPATION_NAMES)}"
    return code


def g_availability(row: _Row, args: dict[str, Any]) -> str:
    return _enum(row, "availability", ("InStock", "InStock", "OutOfStock", "PreOrder", "LimitedAvailability",
                                       "BackOrder", "Discontinued", "SoldOut"),
                 ("in stock", "available", "out of stock", "pre-order", "limited", "backorder", "discontinued",
                  "sold out"))


def g_item_condition(row: _Row, args: dict[str, Any]) -> str:
    return _enum(row, "condition", ("NewCondition", "NewCondition", "UsedCondition", "RefurbishedCondition",
                                    "DamagedCondition"), ("new", "new", "used", "refurbished", "damaged"))


def g_event_status(row: _Row, args: dict[str, Any]) -> str:
    return _enum(row, "event_status", ("EventScheduled", "EventScheduled", "EventScheduled", "EventCancelled",
                                       "EventPostponed", "EventRescheduled", "EventMovedOnline"))


def g_attendance_mode(row: _Row, args: dict[str, Any]) -> str:
    return _enum(row, "attendance", ("OfflineEventAttendanceMode", "OfflineEventAttendanceMode",
                                     "OnlineEventAttendanceMode", "MixedEventAttendanceMode"))


def g_book_format(row: _Row, args: dict[str, Any]) -> str:
    return _enum(row, "book_format", ("Hardcover", "Paperback", "EBook", "AudiobookFormat", "GraphicNovel"),
                 ("hardcover", "paperback", "e-book", "audiobook", "graphic novel"))


def g_restricted_diet(row: _Row, args: dict[str, Any]) -> str:
    return _enum(row, "diet", _DIETS)


def g_gender(row: _Row, args: dict[str, Any]) -> str:
    index = row.rng.randrange(2)
    style = row.style.pick("gender", 5)
    return (("Male", "Female"), ("male", "female"), ("https://schema.org/Male", "https://schema.org/Female"),
            ("M", "F"), ("männlich", "weiblich"))[style][index]


def g_boolean(row: _Row, args: dict[str, Any]) -> str:
    value = row.rng.random() < 0.65
    pair = (("true", "false"), ("True", "False"), ("yes", "no"), ("1", "0"),
            ("https://schema.org/True", "https://schema.org/False"))[row.style.pick("boolean", 5)]
    return pair[0] if value else pair[1]


def g_language(row: _Row, args: dict[str, Any]) -> str:
    """Mostly the site's own language, written as a code, an English name, a tag or the native name."""
    home = [entry for entry in _LANGUAGES if entry[0] == row.style.home.language]
    code, name, tag = home[0] if home and row.rng.random() < 0.6 else row.rng.choice(_LANGUAGES)
    return (code, name, tag, _LANGUAGE_LOCAL[code])[row.style.pick("language", 4)]


def g_unit_code(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_UNIT_CODES)


def g_unit_text(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_UNIT_TEXTS)


def g_age_range(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_AGE_RANGES)


def g_audience(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_AUDIENCES)


def g_warranty(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_WARRANTIES)


def g_delivery_method(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_DELIVERY)


def g_payment(row: _Row, args: dict[str, Any]) -> str:
    methods = row.rng.sample(_PAYMENTS, row.rng.randint(1, 4))
    return (", ".join(methods), " ".join(methods), "; ".join(methods))[row.style.pick("payment_sep", 3)]


def g_credential(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_CREDENTIALS)


def g_experience(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_EXPERIENCE)


def g_amenity(row: _Row, args: dict[str, Any]) -> str:
    return ", ".join(row.rng.sample(_AMENITIES, row.rng.randint(1, 4)))


def g_rating(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    value = round(rng.uniform(2.5, 5.0) * 2) / 2
    style = row.style.pick("rating", 6)
    if style == 0:
        return f"{value:g}/5"
    if style == 1:
        return f"{value:g} out of 5 stars"
    if style == 2:
        stars = int(value)
        return "★" * stars + "☆" * (5 - stars)
    if style == 3:
        return f"{value * 2:g}/10"
    if style == 4:
        return f"{row.style.decimal(rng.uniform(2.5, 5.0), 1)} ({rng.randint(3, 900)} reviews)"
    return f"Rated {value:g} of 5"


def g_star_rating(row: _Row, args: dict[str, Any]) -> str:
    stars = row.rng.choice((2, 3, 3, 4, 4, 4, 5))
    style = row.style.pick("stars", 5)
    return (f"{stars} stars", "★" * stars, str(stars), f"{stars}*", f"{stars} Sterne")[style]


def g_content_rating(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_CONTENT_RATINGS["tv" if args.get("kind") == "tv" else "movie"])


def g_review(row: _Row, args: dict[str, Any]) -> str:
    text = row.rng.choice(_REVIEWS).format(n=row.rng.randint(2, 5))
    if row.style.pick("review_author", 3) == 0:
        given, family = row.rng.choice(_GIVEN), row.rng.choice(_FAMILY)
        return f"{text} - {given} {family[0]}."
    return text


def g_offer(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    price = _money(row, _price_amount(row), "offer_price")
    style = row.style.pick("offer", 3)
    if style == 0:
        return f"Tickets from {price}"
    if style == 1:
        availability = rng.choice(("InStock", "SoldOut", "PreOrder"))
        return f'{{"@type":"Offer","price":"{price}","availability":"https://schema.org/{availability}"}}'
    return f"{price} - {rng.choice(('Early bird', 'Standard', 'VIP', 'Student'))}"


def g_action(row: _Row, args: dict[str, Any]) -> str:
    kind = "ListenAction" if args.get("kind") == "listen" else "WatchAction"
    target = _url(row, f"{'listen' if kind == 'ListenAction' else 'watch'}/{_digits(row.rng, 6)}")
    style = row.style.pick("action", 3)
    if style == 0:
        return kind
    if style == 1:
        return f'{{"@type":"{kind}","target":"{target}"}}'
    return f"{kind} {target}"


def g_instructions(row: _Row, args: dict[str, Any]) -> str:
    steps = row.rng.sample(_STEPS, row.rng.randint(3, 6))
    style = row.style.pick("steps", 3)
    if style == 0:
        return " ".join(f"{i}. {step}." for i, step in enumerate(steps, start=1))
    if style == 1:
        return json.dumps(steps, ensure_ascii=False)
    return "; ".join(steps)


def g_ingredients(row: _Row, args: dict[str, Any]) -> str:
    items = row.rng.sample(_INGREDIENTS, row.rng.randint(3, 7))
    return ", ".join(items) if row.style.pick("ingredients", 2) == 0 else json.dumps(items, ensure_ascii=False)


def g_description(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    topic = args.get("topic", "product")
    sentences = rng.sample(_DESCRIPTION_TEMPLATES[topic], min(len(_DESCRIPTION_TEMPLATES[topic]), rng.randint(1, 3)))
    fill = {"name": f"{rng.choice(_PRODUCT_ADJECTIVES)} {rng.choice(_PRODUCT_NOUNS)}",
            "adj": rng.choice(_ADJECTIVES).lower(), "noun": rng.choice(_PRODUCT_NOUNS).lower(),
            "noun2": rng.choice(_NOUNS).lower(), "material": rng.choice(_MATERIALS), "color": rng.choice(_COLORS),
            "city": row.city.name, "topic": rng.choice(_TOPICS).lower(), "year": rng.randint(1950, 2024),
            "job": rng.choice(_JOB_TITLES), "shop": rng.choice(_SHOPS).lower(), "n": rng.randint(2, 60),
            "cuisine": rng.choice(_CUISINES)}
    return " ".join(sentence.format(**fill) for sentence in sentences)


def g_keywords(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_KEYWORDS)


def g_headline(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_HEADLINES).format(topic=row.rng.choice(_TOPICS))


def g_organization(row: _Row, args: dict[str, Any]) -> str:
    return row.org


def g_publisher(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_PUBLISHERS)


def g_record_label(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_RECORD_LABELS)


def g_league(row: _Row, args: dict[str, Any]) -> str:
    return row.get("league", lambda: row.rng.choice(_LEAGUES))


def g_educational_org(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_UNIVERSITIES)


def _band(rng: random.Random) -> str:
    return f"{rng.choice(('The ', '', ''))}{rng.choice(_BAND_WORDS)} {rng.choice(_BAND_NOUNS)}"


def g_music_group(row: _Row, args: dict[str, Any]) -> str:
    return _band(row.rng)


def g_music_artist(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    if rng.random() < 0.5:
        return row.get("artist", lambda: _band(rng))
    return row.get("artist", lambda: f"{rng.choice(_GIVEN)} {rng.choice(_FAMILY)}")


def g_recording_ref(row: _Row, args: dict[str, Any]) -> str:
    tracks = row.rng.sample(_SONG_WORDS, row.rng.randint(1, 4) if args.get("many") else 1)
    return ", ".join(tracks)


def g_album_ref(row: _Row, args: dict[str, Any]) -> str:
    return row.get("album", lambda: f"{row.rng.choice(_ADJECTIVES)} {row.rng.choice(_NOUNS)}")


def g_album_release_type(row: _Row, args: dict[str, Any]) -> str:
    return _enum(row, "release_type", ("AlbumRelease", "SingleRelease", "EPRelease", "BroadcastRelease"))


def g_series(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    if args.get("kind") == "tv":
        return row.get("series", lambda: rng.choice(_SERIES_TV))
    name = rng.choice(_SERIES_BOOK)
    return (name, f"{name} #{rng.randint(1, 7)}", f"{name}, Book {rng.randint(1, 7)}")[row.style.pick("series", 3)]


def g_season(row: _Row, args: dict[str, Any]) -> str:
    n = row.rng.randint(1, 9)
    return (f"Season {n}", f"S{n:02d}", f"Staffel {n}")[row.style.pick("season", 3)]


def g_genre(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_GENRES[args.get("kind", "movie")])


def g_cuisine(row: _Row, args: dict[str, Any]) -> str:
    return row.get("cuisine", lambda: row.rng.choice(_CUISINES))


def g_employment_type(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_EMPLOYMENT_TYPES)


def g_industry(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_INDUSTRIES)


def g_person_job_title(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_JOB_TITLES)


def g_sport(row: _Row, args: dict[str, Any]) -> str:
    return row.get("sport", lambda: row.rng.choice(_SPORTS))


def g_edition(row: _Row, args: dict[str, Any]) -> str:
    n = row.rng.randint(1, 9)
    return (f"{n}. Auflage", f"{n}th edition" if n > 3 else ("1st", "2nd", "3rd")[n - 1] + " edition",
            f"Edition {n}")[row.style.pick("edition", 3)]


def g_recipe_category(row: _Row, args: dict[str, Any]) -> str:
    return row.rng.choice(_RECIPE_CATEGORIES)


def g_home_team(row: _Row, args: dict[str, Any]) -> str:
    return row.teams[0]


def g_away_team(row: _Row, args: dict[str, Any]) -> str:
    return row.teams[1]


def g_venue(row: _Row, args: dict[str, Any]) -> str:
    rng, city = row.rng, row.city
    if args.get("kind") == "stadium":
        home = row.teams[0].rsplit(" ", 1)[0]
        name = _one_of(rng, lambda: f"{home} Stadium", lambda: f"{home} Arena", lambda: f"Stadion {home}",
                       lambda: f"{rng.choice(_ORG_WORDS)} Park")
    else:
        name = f"{city.name} {rng.choice(_VENUE_KINDS)}" if rng.random() < 0.6 else \
            f"{rng.choice(_ORG_WORDS)} {rng.choice(_VENUE_KINDS)}"
    return (name, f"{name}, {city.name}", f"{name}, {g_street_address(row, args)}, {city.name}")[
        row.style.pick("venue", 3)]


def g_birth_place(row: _Row, args: dict[str, Any]) -> str:
    city = row.rng.choice(_CITIES)
    return (city.name, f"{city.name}, {city.country}", city.local_name)[row.style.pick("birth_place", 3)]


# Main (subject) column generators --------------------------------------------------------------------------------

def g_book_title(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    return _one_of(rng, lambda: f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}",
                   lambda: f"{rng.choice(_NOUNS)} of {row.city.name}",
                   lambda: f"A Short History of {rng.choice(_TOPICS)}",
                   lambda: f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}: A Novel")


def g_creative_work_title(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    return _one_of(rng, lambda: g_headline(row, args),
                   lambda: f"Untitled ({rng.choice(_COLORS).title()} No. {rng.randint(1, 40)})",
                   lambda: f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} (photo series)",
                   lambda: f"Episode {rng.randint(1, 300)}: {rng.choice(_TOPICS)}")


def g_event_name(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    year = rng.randint(2019, 2025)
    return _one_of(rng, lambda: f"{row.city.name} {rng.choice(_EVENT_KINDS)} {year}",
                   lambda: f"{_band(rng)} - Live in {row.city.name}", lambda: f"{rng.choice(_EVENT_KINDS)}",
                   lambda: f"{rng.choice(_EVENT_KINDS)} | {row.city.local_name}")


def g_hotel_name(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    return _one_of(rng, lambda: f"Hotel {rng.choice(_HOTEL_WORDS)} {row.city.local_name}",
                   lambda: f"{rng.choice(_BRANDS)} Inn {row.city.name} Downtown",
                   lambda: f"The {rng.choice(_HOTEL_WORDS)} Suites", lambda: f"{rng.choice(_HOTEL_WORDS)} Hotel & Spa",
                   lambda: f"Pension {rng.choice(_FAMILY)}")


def g_job_title(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    title = rng.choice(_JOB_TITLES)
    style = row.style.pick("job_title", 4)
    if style == 0:
        return f"{rng.choice(_SENIORITY)} {title}"
    if style == 1:
        return f"{title} (m/w/d)"
    if style == 2:
        return f"{title} - {rng.choice(('Part Time', 'Full Time', row.city.name, 'Remote'))}"
    return title


def g_local_business_name(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    shop = rng.choice(_SHOPS)
    return _one_of(rng, lambda: f"{rng.choice(_FAMILY)}'s {shop}",
                   lambda: f"{rng.choice(_ORG_WORDS)} {shop} {row.city.name}", lambda: f"{shop} {rng.choice(_FAMILY)}",
                   lambda: f"Dr. {rng.choice(_FAMILY)} {shop}")


def g_movie_title(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    title = _one_of(rng, lambda: f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}",
                    lambda: f"{rng.choice(_NOUNS)} {rng.randint(2, 4)}",
                    lambda: f"{rng.choice(_NOUNS)}: {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}")
    return f"{title} ({rng.randint(1960, 2024)})" if row.style.pick("movie_year", 3) == 0 else title


def g_museum_name(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    return _one_of(rng, lambda: f"{row.city.name} {rng.choice(_MUSEUM_KINDS)}", lambda: f"{rng.choice(_MUSEUM_KINDS)}",
                   lambda: f"The {rng.choice(_FAMILY)} Collection", lambda: f"Museum {rng.choice(_FAMILY)}")


def g_album_title(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    title = _one_of(rng, lambda: f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}", lambda: rng.choice(_SONG_WORDS),
                    lambda: f"Live at {row.city.name}")
    return f"{title} (Deluxe Edition)" if rng.random() < 0.1 else title


def g_recording_title(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    title = rng.choice(_SONG_WORDS)
    extra = rng.random()
    if extra < 0.1:
        return f"{title} (Remastered {rng.randint(2005, 2023)})"
    if extra < 0.2:
        return f"{title} (feat. {rng.choice(_GIVEN)} {rng.choice(_FAMILY)})"
    return title


def g_place_name(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    return _one_of(rng, lambda: f"{row.city.name} {rng.choice(_PLACE_KINDS)}",
                   lambda: f"{rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} {rng.choice(_PLACE_KINDS)}",
                   lambda: f"{rng.choice(_PLACE_KINDS)} {row.city.local_name}")


def g_recipe_name(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    dish = rng.choice(_DISHES)
    return _one_of(rng, lambda: dish, lambda: f"{rng.choice(_DISH_PREFIXES)} {dish}",
                   lambda: f"{dish} with {rng.choice(_GARNISHES)}")


def g_restaurant_name(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    cuisine = lambda: rng.choice(_CUISINES)  # noqa: E731
    return _one_of(rng, lambda: f"Trattoria {rng.choice(_FAMILY)}", lambda: f"The {rng.choice(_RESTAURANT_WORDS)}",
                   lambda: f"{row.get('cuisine', cuisine)} Kitchen {row.city.name}",
                   lambda: f"Café {row.city.local_name}", lambda: f"Restaurant {rng.choice(_RESTAURANT_WORDS)}")


def g_sports_event_name(row: _Row, args: dict[str, Any]) -> str:
    home, away = row.teams
    style = row.style.pick("match_name", 4)
    if style == 0:
        return f"{home} vs {away}"
    if style == 1:
        return f"{home} - {away}"
    if style == 2:
        return f"{g_league(row, args)}: {home} v {away}"
    return f"{home} vs. {away} (Matchday {row.rng.randint(1, 34)})"


def g_episode_title(row: _Row, args: dict[str, Any]) -> str:
    rng = row.rng
    title = f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
    style = row.style.pick("episode", 3)
    if style == 0:
        return title
    if style == 1:
        return f"Episode {rng.randint(1, 24)}: {title}"
    return f"S{rng.randint(1, 9):02d}E{rng.randint(1, 24):02d} - {title}"


GENERATORS: dict[str, Generator] = {
    name[2:]: function for name, function in list(globals().items()) if name.startswith("g_") and callable(function)
}
"""Value generators by name (the ``gen`` field of the label map)."""


# ----------------------------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------------------------

def _table_rng(data_seed: int, index: int) -> random.Random:
    digest = hashlib.sha256(f"aegir.tables.synthetic:{data_seed}:{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _choose_columns(entity: EntitySpec, rng: random.Random) -> list[ColumnSpec]:
    """The optional columns of one table: each present with its probability, at least a few."""
    chosen = [spec for spec in entity.columns if rng.random() < spec.p]
    if len(chosen) < MIN_OPTIONAL_COLUMNS:
        rest = [spec for spec in entity.columns if spec not in chosen]
        rest.sort(key=lambda spec: -spec.p)
        chosen += rest[:MIN_OPTIONAL_COLUMNS - len(chosen)]
    rng.shuffle(chosen)
    return chosen


def generate_table(data_seed: int, index: int, label_map: LabelMap | None = None
                   ) -> tuple[Table, list[ColumnLabel], list[PairLabel]]:
    """Table ``index`` of the corpus for ``data_seed`` and its CTA and CPA ground truth."""
    label_map = label_map or load_label_map()
    rng = _table_rng(data_seed, index)
    entities = sorted(label_map.entities.values(), key=lambda entity: entity.name)
    entity = rng.choices(entities, weights=[entity.weight for entity in entities])[0]
    style = _Style(rng)
    specs = _choose_columns(entity, rng)
    main_at = 0 if rng.random() < MAIN_FIRST_PROBABILITY else rng.randint(1, len(specs))
    specs.insert(main_at, entity.main)
    n_rows = rng.randint(*ROWS_RANGE)
    missing = {spec.header: (0.0 if spec is entity.main else min(0.9, style.missing * rng.uniform(0.5, 2.0)))
               for spec in specs}
    # Draw in label-map order so dependent columns (endDate after startDate) see their source; store by position.
    draw_order = sorted(range(len(specs)), key=lambda i: (specs[i] is not entity.main,
                                                           [entity.main, *entity.columns].index(specs[i])))
    plan = [(i, GENERATORS[specs[i].gen], {**specs[i].args, "header": specs[i].header}, missing[specs[i].header])
            for i in draw_order]
    columns: list[list[str | None]] = [[] for _ in specs]
    for r in range(n_rows):
        row = _Row(style, entity.name, r)
        for i, generate, args, missing_rate in plan:
            value: str | None = generate(row, args)
            if missing_rate and rng.random() < missing_rate:
                value = None
            elif value is not None and (value.strip() != value or "  " in value):
                value = normalize_cell(value)  # a guard: generators are meant to emit normalised text
            columns[i].append(value)
    name = f"{entity.name}_{style.site}_{index:06d}"
    table = Table(name, tuple(tuple(column) for column in columns), tuple(spec.header for spec in specs))
    cta = [ColumnLabel(name, i, spec.label) for i, spec in enumerate(specs) if spec.label]
    cpa = [PairLabel(name, main_at, i, spec.property) for i, spec in enumerate(specs) if spec.property]
    return table, cta, cpa


def generate_corpus(n_tables: int, data_seed: int) -> TableCorpus:
    """``n_tables`` synthetic tables for ``data_seed`` with their CTA and CPA ground truth, and the content hash."""
    if n_tables < 1:
        raise ValueError(f"n_tables must be >= 1, got {n_tables}")
    label_map = load_label_map()
    tables: dict[str, Table] = {}
    cta: list[ColumnLabel] = []
    cpa: list[PairLabel] = []
    for index in range(n_tables):
        table, table_cta, table_cpa = generate_table(data_seed, index, label_map)
        tables[table.name] = table
        cta += table_cta
        cpa += table_cpa
    return TableCorpus("synthetic", tables, cta, cpa, {}, corpus_content_sha256(tables.values(), cta, cpa))
