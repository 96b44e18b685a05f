/**
 * Text the tiny tokenizers learn their pieces from: prompt-like English, written for Atelier, so
 * that common prompt words become single tokens as they do in the real tokenizers.
 */
export const TINY_CORPUS = `
a photo of a cat sitting on a wooden table, soft light, shallow depth of field
a lighthouse at dusk, oil painting, dramatic clouds over the sea
a watercolor painting of a mountain village in winter with snow on the roofs
portrait of an old fisherman, detailed face, cinematic lighting, 35mm photo
a cozy reading room filled with books and plants, warm evening light
a red fox running through a forest in autumn, leaves falling, high detail
an astronaut riding a horse on the moon, digital art, trending colors
a bowl of ramen with steam rising, food photography, close up
a medieval castle on a hill at sunrise, fantasy landscape, epic scale
a futuristic city street at night with neon signs and rain reflections
a small boat on a calm lake surrounded by pine trees, morning mist
an illustration of a dragon flying over the ocean, vibrant colors
a still life of flowers in a glass vase, impressionist style painting
a golden retriever puppy playing in the grass, bright sunny day
the interior of a busy train station, people walking, motion blur
a portrait of a young woman with curly hair, studio lighting, sharp focus
a desert canyon under a starry night sky, long exposure photograph
a cup of coffee on a windowsill while it is raining outside
an ancient library with glowing runes and floating candles, magical
a robot painting a picture in an artist studio, whimsical, detailed
a snowy mountain peak above the clouds, aerial view, blue hour
a field of sunflowers under a blue sky, summer, wide angle
a knight in shining armor standing in front of a burning tower
a black and white photograph of a city bridge in the fog
a colorful hot air balloon floating over green hills at dawn
a tiny house in the woods with a garden and a stone path
a close up of a hummingbird drinking from a flower, macro photo
a sailing ship in a storm, huge waves, dark clouds, painting
a bright kitchen with white tiles and copper pots, interior design
two cats sleeping together on a soft blanket, cute, warm colors
a high quality render of a glass sphere on a checkered floor
a man reading a newspaper in a park, vintage film photo, 1970s
blurry, bad hands, low quality, distorted, extra fingers, watermark, text
`;
